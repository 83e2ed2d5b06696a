"""Linear read-out of the shipped sinctdnn-aam's pooled statistics onto ecapa-aam's embeddings.

The embedding layer of sinctdnn-aam (``tdnn.segment``: 1,536 pooled statistics -> 256) is
replaced by the ridge regression of the teacher's unit embeddings (zero-padded to 256) on
the student's statistics of augmented training chunks (every class x CHUNKS, the imprinting
batches of the training sampler); every other weight stays. Validation EER on ``mixed.txt``
for each ridge strength, then the best network saved as a weights file (a training run can start
from it with ``init_from``). Run from the repository root:

    OMP_NUM_THREADS=1 python recipes/bundled/runs/rounds/probe.py configs/bundled/sinctdnn_aam_distill.yml OUT.safetensors
"""

import sys
import time

import torch

from voxmetric.inference.loading import resolve
from voxmetric.inference.speaker_model import load_model
from voxmetric.inference.weights import read_weights, write_weights
from voxmetric.training.config import load_config
from voxmetric.training.setup import build_corpus, build_dataset, validate

CHUNKS = 8
RIDGES = (1e-3, 1e-2, 1e-1, 1.0)

config = load_config(sys.argv[1], ["data.num_workers=0"])
out = sys.argv[2]
torch.manual_seed(0)
dataset = build_dataset(config, build_corpus(config), start_batch=0)
student = load_model(config.init_from).network.eval()
teacher = load_model(config.distill.teacher).network.eval()
segment = student.tdnn.segment
captured = []
hook = segment.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
features, targets = [], []
started = time.time()
with torch.no_grad():
    for index, (waveforms, _) in enumerate(dataset.class_batches(CHUNKS)):
        captured.clear()
        student(waveforms)
        features.append(captured[0].double())
        targets.append(torch.nn.functional.normalize(teacher(waveforms).double(), dim=1))
        if index % 10 == 0:
            print(f"batch {index}: {time.time() - started:.0f} s", flush=True)
hook.remove()
X, T = torch.cat(features), torch.cat(targets)
T = torch.nn.functional.pad(T, (0, segment.out_features - T.shape[1]))
mean, scale = X.mean(0), X.std(0) + 1e-8
Z = (X - mean) / scale
print(f"{len(X)} chunks, {X.shape[1]} statistics -> {T.shape[1]}", flush=True)
original = {k: v.clone() for k, v in segment.state_dict().items()}
best = None
for ridge in RIDGES:
    gram = Z.T @ Z / len(Z) + ridge * torch.eye(Z.shape[1], dtype=Z.dtype)
    W = torch.linalg.solve(gram, Z.T @ T / len(Z))  # (stats, out)
    fit = torch.nn.functional.cosine_similarity(Z @ W, T[:, :T.shape[1]], dim=1).mean()
    with torch.no_grad():  # y = ((x - mean) / scale) @ W = x @ (W / scale) - (mean / scale) @ W
        segment.weight.copy_((W / scale[:, None]).T.float())
        segment.bias.copy_((-(mean / scale) @ W).float())
    eer = validate(student, config, torch.device("cpu"), False)
    print(f"ridge {ridge:g}: training cosine {float(fit):.3f}, validation EER {eer:.2f}%", flush=True)
    if best is None or eer < best[0]:
        best = (eer, ridge, {k: v.clone() for k, v in segment.state_dict().items()})
print(f"best ridge {best[1]:g}: validation EER {best[0]:.2f}%", flush=True)
segment.load_state_dict(best[2])
# A weights file like the shipped one (no threshold or calibration: they belonged to the old layer).
tensors, metadata = read_weights(resolve(config.init_from)[1])
tensors.update({key: value.detach().clone().contiguous() for key, value in student.state_dict().items()})
metadata = {key: value for key, value in metadata.items() if key not in ("threshold", "calibration")}
metadata["embedding"] = metadata["embedding"].to_dict()
metadata["description"] = f"{config.init_from}, embedding layer refitted to {config.distill.teacher} (ridge {best[1]:g})"
write_weights(out, tensors, metadata)
