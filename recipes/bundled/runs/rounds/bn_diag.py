"""Does sinctdnn-aam get worse because its batch-norm running statistics drift?

    python recipes/bundled/runs/rounds/bn_diag.py EXP/sinctdnn-aam-r3b trained start \
        trained+start_stats trained+clean_stats trained+aug_stats start+clean_stats start+aug_stats

Prints, per batch-norm layer, how far the run's last checkpoint moved its running statistics from
the shipped network's, then the validation EER (the run's ``validation:`` trials) of each variant:
the shipped network (``start``), the run's (``trained``), either with the other's statistics or
with statistics re-estimated on 20 training batches (clean or augmented). Output of 2026-12-02:
``bn_diag.log`` (recipes/bundled/README.md, "Round 3").
"""
import copy, sys, json, time
import torch
from torch import nn
from voxmetric.training.config import load_config
from voxmetric.training import setup
from voxmetric.inference.speaker_model import load_network_weights

torch.set_num_threads(1)
run = sys.argv[1]                 # run dir, e.g. /work/exp/r3b-sinctdnn
which = sys.argv[2:]              # variants
config = load_config(f"{run}/config.yml")
config.init_from = None
corpus = setup.build_corpus(config)
labels = setup.class_labels(config, corpus)
model, _ = setup.build_model_and_loss(config, len(labels))
state = torch.load(f"{run}/checkpoints/last.pt", weights_only=True, map_location="cpu")
trained = copy.deepcopy(model); trained.load_state_dict(state["model"]); trained.eval()
start = copy.deepcopy(model); load_network_weights(start, "sinctdnn-aam"); start.eval()
dev = torch.device("cpu")

def bns(m):
    return {n: x for n, x in m.named_modules() if isinstance(x, nn.BatchNorm1d) and x.track_running_stats}

for n, b in bns(trained).items():
    a = bns(start)[n]
    print(f"{n:28s} mean shift/std {((b.running_mean - a.running_mean).abs() / a.running_var.sqrt()).mean():.3f}"
          f"  var ratio {(b.running_var / a.running_var).mean():.3f}", flush=True)

def reestimate(m, clean, n_batches=20):
    m = copy.deepcopy(m)
    cfg = copy.deepcopy(config)
    if clean:
        cfg.data.augmentation = None
    cfg.data.speed_perturb = []
    data = setup.build_dataset(cfg, corpus, start_batch=10_000)
    for b in bns(m).values():
        b.reset_running_stats(); b.momentum = None
    m.eval()
    for b in bns(m).values():
        b.train()
    it = iter(data)
    with torch.no_grad():
        for _ in range(n_batches):
            w, _ = next(it)
            m(w)
    m.eval()
    return m

def swap_stats(m, src):
    m = copy.deepcopy(m)
    for n, b in bns(m).items():
        s = bns(src)[n]
        b.running_mean.copy_(s.running_mean); b.running_var.copy_(s.running_var)
    return m

variants = {
    "start": lambda: start,
    "trained": lambda: trained,
    "trained+start_stats": lambda: swap_stats(trained, start),
    "trained+clean_stats": lambda: reestimate(trained, True),
    "trained+aug_stats": lambda: reestimate(trained, False),
    "start+clean_stats": lambda: reestimate(start, True),
    "start+aug_stats": lambda: reestimate(start, False),
}
for v in which:
    t = time.time()
    eer = setup.validate(variants[v](), config, dev)
    print(json.dumps({"variant": v, "val_eer": round(eer, 2), "s": round(time.time() - t)}), flush=True)
