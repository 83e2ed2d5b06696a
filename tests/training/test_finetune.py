"""Fine-tuning: the frozen start, two learning rates, epoch-0 validation, the shipped configs."""

import importlib.util
import json

import pytest
import torch

from voxmetric.errors import ConfigError
from voxmetric.inference.checkpoint import load_checkpoint
from voxmetric.training import trainer as trainer_module
from voxmetric.training.config import config_from_dict, load_config
from voxmetric.training.finetune import no_improvement_note, validates_at_start
from voxmetric.training.optim import build_optimizer, build_scheduler
from voxmetric.training.run_state import resume_changes
from voxmetric.training.setup import build_model_and_loss
from voxmetric.training.trainer import Trainer, train

from ..conftest import REPO_ROOT
from ..inference.test_speaker_model import make_checkpoint
from .test_trainer import TINY_MODEL, _config, tiny_corpus  # noqa: F401  (fixture)


def _load(tmp_path, corpus, overrides=(), **training):
    return load_config(_config(tmp_path, corpus, **training), ["validation.trials=null", *overrides])


def _records(exp):
    return [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# --- the frozen start -----------------------------------------------------------------------


def test_freeze_keeps_network_and_batch_norm_fixed_then_trains_it(tmp_path, tiny_corpus, monkeypatch):  # noqa: F811
    run = Trainer(_load(tmp_path, tiny_corpus, ["training.freeze_network_batches=2"], epochs=1, batches_per_epoch=4),
                  tmp_path / "exp", progress=False)
    network, head = run.step.model, run.step.loss
    assert any("running_mean" in k for k in network.state_dict())  # batch norm: statistics that could drift
    seen = [(_snapshot(network), _snapshot(head))]
    modes = []
    original = Trainer._train_batch

    def step_and_record(self, waveforms, labels):
        value = original(self, waveforms, labels)
        modes.append((network.training, any(p.requires_grad for p in network.parameters())))
        seen.append((_snapshot(network), _snapshot(head)))
        return value

    monkeypatch.setattr(Trainer, "_train_batch", step_and_record)
    run.run()
    start_network, start_head = seen[0]
    for network_after, head_after in seen[1:3]:  # steps 1 and 2: head only, bit for bit
        assert _same(network_after, start_network)
        assert not _same(head_after, start_head)
    assert modes[:2] == [(False, False), (False, False)]  # eval mode, no gradients
    assert modes[2:] == [(True, True), (True, True)]
    network_3 = seen[3][0]
    changed = {k for k in start_network if not torch.equal(network_3[k], start_network[k])}
    assert any("running_mean" in k for k in changed) and any(k.endswith("weight") for k in changed)


def test_two_parameter_groups_follow_the_schedule(tmp_path, tiny_corpus):  # noqa: F811
    config = _load(tmp_path, tiny_corpus, ["optimizer.network_lr_scale=0.1", "training.freeze_network_batches=3",
                                           "schedule.warmup_batches=2"], epochs=1, batches_per_epoch=8)
    network, head = build_model_and_loss(config, 4)
    optimizer = build_optimizer(config, network, head)
    assert [len(g["params"]) for g in optimizer.param_groups] == [len(list(head.parameters())),
                                                                  len(list(network.parameters()))]
    assert optimizer.param_groups[0]["params"][0] is next(head.parameters())
    scheduler = build_scheduler(config, optimizer)
    rates = []
    for _ in range(7):
        rates.append(tuple(round(lr, 12) for lr in scheduler.get_last_lr()))
        optimizer.step()
        scheduler.step()
    # head: warm-up 0.5, 1, then constant 0.005; network: 0 for 3 batches, then its own
    # warm-up (0.5, 1) at 0.005 x 0.1.
    assert rates == [(0.0025, 0.0), (0.005, 0.0), (0.005, 0.0), (0.005, 0.00025), (0.005, 0.0005),
                     (0.005, 0.0005), (0.005, 0.0005)]


def test_cosine_schedule_ends_at_min_lr_in_both_groups(tmp_path, tiny_corpus):  # noqa: F811
    config = _load(tmp_path, tiny_corpus, ["optimizer.network_lr_scale=0.1", "schedule.name=cosine",
                                           "schedule.min_lr=0.001"], epochs=1, batches_per_epoch=10)
    network, head = build_model_and_loss(config, 4)
    optimizer = build_optimizer(config, network, head)
    scheduler = build_scheduler(config, optimizer)
    assert scheduler.get_last_lr() == pytest.approx([0.005, 0.0005])
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([0.001, 0.0001])  # the floor, scaled for the network


def test_without_the_options_one_group_as_before(tmp_path, tiny_corpus):  # noqa: F811
    config = _load(tmp_path, tiny_corpus)
    network, head = build_model_and_loss(config, 4)
    optimizer = build_optimizer(config, network, head)
    assert len(optimizer.param_groups) == 1  # checkpoints of earlier runs keep resuming
    assert optimizer.param_groups[0]["params"] == [*network.parameters(), *head.parameters()]


def test_the_trainer_logs_both_rates(tmp_path, tiny_corpus):  # noqa: F811
    config = _load(tmp_path, tiny_corpus, ["training.freeze_network_batches=2", "optimizer.network_lr_scale=0.5"],
                   epochs=1, batches_per_epoch=3)
    train(config, tmp_path / "exp", progress=False)
    logged = [(r["lr"], r["network_lr"]) for r in _records(tmp_path / "exp") if "loss" in r]
    assert logged == [(0.005, 0.0), (0.005, 0.0025), (0.005, 0.0025)]  # after steps 1, 2, 3


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after_batch", [2, 5])  # resumed from batch 1 (frozen) and 4 (unfrozen)
def test_resume_is_exact_across_the_freeze_boundary(tmp_path, tiny_corpus, monkeypatch,  # noqa: F811
                                                    crash_after_batch):
    overrides = ["training.freeze_network_batches=3", "optimizer.network_lr_scale=0.5",
                 "training.checkpoint_every_batches=1", "schedule.warmup_batches=2"]
    settings = {"epochs": 2, "batches_per_epoch": 4}
    straight = train(_load(tmp_path / "a", tiny_corpus, overrides, **settings), tmp_path / "a" / "exp",
                     progress=False)
    config = _load(tmp_path / "b", tiny_corpus, overrides, **settings)
    exp = tmp_path / "b" / "exp"
    original_log = Trainer._log

    def crash(self, record):
        original_log(self, record)
        if record.get("batch") == crash_after_batch and "loss" in record:
            raise _Crash

    monkeypatch.setattr(Trainer, "_log", crash)
    with pytest.raises(_Crash):
        train(config, exp, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(exp / "checkpoints" / "last.pt")["batches_done"] == crash_after_batch - 1
    resumed = train(config, exp, resume=True, progress=False)
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for part in ("model", "loss"):
        for name in a[part]:
            torch.testing.assert_close(a[part][name], b[part][name], rtol=0, atol=0, msg=name)
    assert [r["batch"] for r in _records(exp) if "loss" in r] == list(range(1, 9))


def test_resume_refuses_another_freeze_and_accepts_older_checkpoints():
    saved = config_from_dict({"training": {"freeze_network_batches": 100}}).to_dict()
    assert resume_changes(saved, config_from_dict({}).to_dict()) == ["training.freeze_network_batches"]
    older = config_from_dict({}).to_dict()  # a checkpoint from before these keys existed
    del older["training"]["freeze_network_batches"], older["optimizer"]["network_lr_scale"]
    del older["validation"]["at_start"]
    assert resume_changes(older, config_from_dict({}).to_dict()) == []
    assert resume_changes(older, config_from_dict({"optimizer": {"network_lr_scale": 0.1}}).to_dict()) == [
        "optimizer.network_lr_scale"]


# --- epoch 0 ----------------------------------------------------------------------------------


def test_validation_at_start_defaults_to_on_when_fine_tuning():
    trials = {"validation": {"trials": "t.txt"}}
    assert validates_at_start(config_from_dict({**trials, "init_from": "ecapa-aam"}))
    assert not validates_at_start(config_from_dict(trials))
    assert validates_at_start(config_from_dict({"validation": {"trials": "t.txt", "at_start": True}}))
    assert not validates_at_start(config_from_dict({"init_from": "ecapa-aam",
                                                    "validation": {"trials": "t.txt", "at_start": False}}))
    assert not validates_at_start(config_from_dict({"init_from": "ecapa-aam"}))  # nothing to validate on


def _counting_validate(monkeypatch, eers):
    """Replace validation by a list of EERs, one per call; returns the calls made."""
    calls = []

    def validate(model, config, device, progress=False):
        calls.append(len(calls))
        return eers[len(calls) - 1]

    monkeypatch.setattr(trainer_module, "validate", validate)
    return calls


def test_epoch_zero_is_logged_once_and_not_repeated_on_resume(tmp_path, tiny_corpus, monkeypatch,  # noqa: F811
                                                             capsys):
    start = make_checkpoint(tmp_path / "start.pt", TINY_MODEL)
    path = _config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=2)
    calls = _counting_validate(monkeypatch, [40.0, 30.0, 20.0])
    first = train(load_config(path, [f"init_from={start}"]), tmp_path / "exp", progress=True)
    assert len(calls) == 2 and first.best_eer == 30.0
    assert "epoch 0 (starting model): validation EER 40.00%" in capsys.readouterr().out
    resumed = train(load_config(path, [f"init_from={start}", "training.epochs=2"]), tmp_path / "exp",
                    resume=True, progress=False)
    assert len(calls) == 3  # epoch 2 only: the starting model is not validated again
    epochs = [(r["epoch"], r["val_eer"]) for r in _records(tmp_path / "exp") if "epoch" in r]
    assert epochs == [(0, 40.0), (1, 30.0), (2, 20.0)]
    assert [(r["epoch"], r["batch"]) for r in resumed.history] == [(0, 0), (1, 2), (2, 4)]


def test_best_is_the_starting_model_when_no_epoch_beats_it(tmp_path, tiny_corpus, monkeypatch,  # noqa: F811
                                                          capsys):
    _counting_validate(monkeypatch, [10.0, 20.0, 15.0])
    config = load_config(_config(tmp_path, tiny_corpus, epochs=2, batches_per_epoch=2),
                         ["validation.at_start=true"])
    run = Trainer(config, tmp_path / "exp", progress=False)
    start = _snapshot(run.step.model)
    result = run.run()
    assert result.best_eer == 10.0
    best = load_checkpoint(tmp_path / "exp" / "checkpoints" / "best.pt")
    assert best["batches_done"] == 0 and _same(best["model"], start)
    assert not _same(load_checkpoint(result.last_checkpoint)["model"], start)
    assert ("no epoch beat the starting model (EER 10.00%; best after training 15.00%): "
            "checkpoints/best.pt holds the starting network; try training.imprint_head_chunks=2") \
        in capsys.readouterr().out
    # Already imprinted: not suggested again.
    assert "imprint_head_chunks" not in no_improvement_note(result.history, imprinted=True)
    # Trained by a teacher alone: no head remedies, the teacher and the rate instead.
    teacher_only = no_improvement_note(result.history, imprinted=False, label_loss=False)
    assert teacher_only.endswith("try a lower optimizer.lr, or a teacher better than the starting model on validation")


def test_an_epoch_that_beats_the_start_becomes_best(tmp_path, tiny_corpus, monkeypatch, capsys):  # noqa: F811
    _counting_validate(monkeypatch, [30.0, 20.0, 25.0])
    config = load_config(_config(tmp_path, tiny_corpus, epochs=2, batches_per_epoch=2),
                         ["validation.at_start=true"])
    result = train(config, tmp_path / "exp", progress=False)
    assert result.best_eer == 20.0
    assert load_checkpoint(tmp_path / "exp" / "checkpoints" / "best.pt")["batches_done"] == 2
    assert "no epoch beat" not in capsys.readouterr().out
    assert no_improvement_note(result.history) is None


# --- config errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ({"training": {"freeze_network_batches": -1}}, r"training\.freeze_network_batches must be >= 0, got -1"),
    ({"training": {"freeze_network_batches": 2.5}}, r"training\.freeze_network_batches: expected int"),
    ({"optimizer": {"network_lr_scale": 0}}, r"optimizer\.network_lr_scale must be positive, got 0\.0 .*"
                                             r"training\.freeze_network_batches"),
    ({"optimizer": {"network_lr_scale": -0.1}}, r"optimizer\.network_lr_scale must be positive"),
    ({"validation": {"at_start": "yes"}}, r"validation\.at_start: expected bool"),
    ({"validation": {"at_start": True}}, r"validation\.at_start is true but validation\.trials is not set"),
])
def test_fine_tuning_keys_are_validated(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_freezing_needs_a_loss_with_parameters(tmp_path, tiny_corpus):  # noqa: F811
    config = _load(tmp_path, tiny_corpus, ["loss.name=triplet", "training.freeze_network_batches=5"])
    with pytest.raises(ConfigError, match="loss 'triplet' has no parameters of its own"):
        Trainer(config, tmp_path / "exp", progress=False)


# --- the shipped fine-tuning configs ----------------------------------------------------------


@pytest.mark.parametrize("name", ["ecapa_aam", "sinctdnn_aam"])
def test_shipped_finetune_configs_match_the_bundled_models(name):
    from voxmetric.inference.loading import read_source
    from voxmetric.models import build_model
    from voxmetric.training.setup import frontend_settings

    config = load_config(REPO_ROOT / "configs" / "finetune" / f"{name}.yml")
    assert config.init_from == name.replace("_", "-")
    bundled = read_source(config.init_from)
    network, head = build_model_and_loss(config, num_speakers=8)  # loads init_from: no shape error
    # Same architecture in every constructor argument (a sinc-kernel scaling has no shape to catch),
    # the same front-end, so before / after figures differ by the weights alone.
    assert network.config == build_model(bundled.model["name"], **bundled.model["params"]).config
    assert frontend_settings(config) == bundled.frontend
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, bundled.weights[key].to(value.dtype), rtol=0, atol=0, msg=key)
    assert validates_at_start(config) and config.training.freeze_network_batches > 0
    assert config.optimizer.network_lr_scale < 1.0


# --- the recipe's layout ----------------------------------------------------------------------


def _recipe(relative: str):
    """A recipe script loaded as a module."""
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_")[:-3], REPO_ROOT / "recipes" / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_layout_is_speaker_disjoint_linked_and_deterministic(tmp_path, tiny_corpus, monkeypatch):  # noqa: F811
    prepare = _recipe("finetune/prepare.py")
    monkeypatch.setattr(prepare, "write_noise_folder", lambda out, **kw: (out.mkdir(parents=True), out)[1])
    monkeypatch.setattr(prepare, "write_rir_folder", lambda out, **kw: (out.mkdir(parents=True), out)[1])
    from voxmetric.data import degrade

    coloured = degrade.make_noise  # the validation noise bank as coloured noises only: babble takes seconds each
    monkeypatch.setattr(degrade, "make_noise", lambda index, duration_s, seed: coloured(3 * index, duration_s, seed))
    generated = []
    monkeypatch.setattr(prepare, "synthesize", lambda out, **kw: (out.mkdir(parents=True), generated.append(kw)))
    speakers = tiny_corpus / "train"
    counts = prepare.prepare(speakers, tmp_path / "a", 2, None, 0, 100)
    # the rehearsal corpus: the bundled models' own synthetic training corpus
    assert generated == [{"speakers": 300, "utterances": 16, "seed": 1, "progress": False}]
    assert (tmp_path / "a" / "rehearsal" / "synth").is_dir()
    assert counts == {"train": 2, "val": 2, "trials": 2 * 12}  # 6 same-speaker pairs + 6 others, 2 conditions
    train_speakers = {p.name for p in (tmp_path / "a" / "train").iterdir()}
    val_speakers = {p.name for p in (tmp_path / "a" / "val" / "clean").iterdir() if p.is_symlink()}
    assert train_speakers.isdisjoint(val_speakers) and len(train_speakers | val_speakers) == 4
    assert all((tmp_path / "a" / "train" / s).is_symlink() for s in train_speakers)
    lines = (tmp_path / "a" / "val" / "trials.txt").read_text().splitlines()
    assert {line.split()[1].split("/")[0] for line in lines} == {"clean", "degraded"}
    assert all((tmp_path / "a" / "val" / key).is_file() for line in lines for key in line.split()[1:])
    prepare.prepare(speakers, tmp_path / "b", 2, None, 0, 100)
    assert (tmp_path / "b" / "val" / "trials.txt").read_text() == "\n".join(lines) + "\n"
    listed = tmp_path / "val.txt"
    listed.write_text("# held out\nspk1\nspk3\n")
    prepare.prepare(speakers, tmp_path / "c", None, listed, 0, 100, rehearsal_speakers=0)
    assert not (tmp_path / "c" / "rehearsal").exists() and len(generated) == 2
    assert sorted(p.name for p in (tmp_path / "c" / "train").iterdir()) == ["spk0", "spk2"]


def test_recipe_validation_speakers_are_the_bundled_recipes(shared_data):
    held = {row["speaker_id"] for row in _recipe("bundled/prepare.py").split_speechocean(shared_data)[2]}
    speakers = sorted(p.name for p in (shared_data / "speechocean-train").iterdir() if p.is_dir())
    listed = _recipe("finetune/prepare.py").read_speaker_list(REPO_ROOT / "recipes" / "finetune" / "speechocean-val.txt",
                                                             speakers)
    assert set(listed) == held and len(listed) == 24


_RANKS_SCRIPT = """
import sys, torch
from voxmetric.training import distributed
from voxmetric.training.config import load_config
from voxmetric.training.trainer import Trainer
with distributed.session():
    run = Trainer(load_config(sys.argv[1]), sys.argv[2], progress=False)
    start = {k: v.clone() for k, v in run.step.model.named_parameters()}
    run.run()
    torch.save({"start": start, "end": dict(run.step.named_parameters())}, f"{sys.argv[2]}/rank{distributed.rank()}.pt")
"""


def test_bundled_export_tries_the_cheapest_front_end_first():
    from voxmetric.inference.frontend import FrontendSettings
    from voxmetric.training.frontend_select import windows_per_minute

    candidates = _recipe("bundled/export.py").candidate_settings()
    costs = [windows_per_minute(FrontendSettings(**c)) for c in candidates]
    assert costs == sorted(costs) and costs[0] == 1  # whole file first: ties go to the fewer windows
    assert [(c["window_s"], c["step_s"]) for c in candidates] == [(None, 0.1), (3.0, 1.5), (3.0, 0.5), (3.0, 0.1)]
    assert {c["rms_dbfs"] for c in candidates} == {-26.0}


@pytest.mark.slow
def test_ddp_ranks_agree_across_the_freeze_boundary(tmp_path, tiny_corpus):  # noqa: F811
    """Under torchrun the DDP wrapper is rebuilt when the network is unfrozen, so that its
    gradients are averaged too: both ranks end with the same parameters."""
    import os
    import subprocess
    import sys

    config = _config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=4, freeze_network_batches=2)
    script = tmp_path / "ranks.py"
    script.write_text(_RANKS_SCRIPT)
    (tmp_path / "exp").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(config), str(tmp_path / "exp")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "exp" / f"rank{r}.pt") for r in (0, 1))
    assert _same(rank0["end"], rank1["end"])
    assert any(not torch.equal(rank0["end"][f"model.{k}"], v) for k, v in rank0["start"].items())


# --- the imprinted head -----------------------------------------------------------------------


class _FirstSamples(torch.nn.Module):
    """A 'network' whose embedding is the first ``dim`` samples of the waveform."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, waveforms):
        return waveforms[:, :self.dim]


def test_imprinted_weights_are_each_class_mean_direction():
    from voxmetric.losses import build_loss
    from voxmetric.training.finetune import imprint_head

    # Class 0: (3, 4) and (0, 2) -> unit vectors (0.6, 0.8) and (0, 1): mean (0.3, 0.9) -> (1, 3) / sqrt(10).
    # Class 1: (-2, 0) alone -> (-1, 0).
    batches = [(torch.tensor([[3.0, 4.0, 9.0], [-2.0, 0.0, 9.0]]), torch.tensor([0, 1])),
               (torch.tensor([[0.0, 2.0, 9.0]]), torch.tensor([0]))]
    loss = build_loss("aam", embedding_dim=2, num_speakers=2)
    network = _FirstSamples(2).train()
    imprint_head(network, loss, batches, torch.device("cpu"))
    expected = torch.tensor([[1.0, 3.0], [-1.0, 0.0]])
    expected[0] /= 10 ** 0.5
    torch.testing.assert_close(loss.weight.detach(), expected)
    assert network.training  # its mode is given back
    # Sub-centre AAM: every sub-centre of a speaker starts at its direction.
    loss = build_loss("subcenter_aam", embedding_dim=2, num_speakers=2, num_subcenters=3)
    imprint_head(_FirstSamples(2), loss, batches, torch.device("cpu"))
    torch.testing.assert_close(loss.weight.detach(), expected.repeat_interleave(3, dim=0))


def test_imprinting_needs_cosine_weights_and_every_class():
    from voxmetric.losses import build_loss
    from voxmetric.training.finetune import imprint_head

    batches = [(torch.ones(2, 3), torch.tensor([0, 0]))]
    with pytest.raises(ConfigError, match=r"1 of 2 classes got no chunk"):
        imprint_head(_FirstSamples(2), build_loss("aam", embedding_dim=2, num_speakers=2), batches,
                     torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"imprint_head_chunks needs a loss with cosine class weights"):
        imprint_head(_FirstSamples(2), build_loss("ce", embedding_dim=2, num_speakers=2), batches,
                     torch.device("cpu"))


def test_class_batches_cover_every_class_and_leave_the_training_stream_alone(tiny_corpus):  # noqa: F811
    from voxmetric.data.readers import read_corpus
    from voxmetric.data.sampler import ChunkBatches

    corpus = read_corpus(str(tiny_corpus / "train"), "folders")
    data = ChunkBatches(corpus, speakers_per_batch=3, chunks_per_speaker=2, chunk_duration_s=0.5, seed=4,
                        speed_factors=(0.9,))
    before = data.batch(0)
    first = list(data.class_batches(3))
    assert [len(labels) for _, labels in first] == [6, 6, 6, 6]  # 8 classes x 3 chunks in batches of 6
    labels = torch.cat([labels for _, labels in first])
    assert torch.equal(labels, torch.arange(8).repeat_interleave(3))
    again = list(data.class_batches(3))
    for (w1, _), (w2, _) in zip(first, again):
        assert torch.equal(w1, w2)
    assert not torch.equal(first[0][0][:2], first[0][0][2:4])  # chunks drawn, not repeated
    after = data.batch(0)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    with pytest.raises(ValueError, match="chunks_per_class must be >= 1"):
        next(data.class_batches(0))


def test_a_run_starts_from_the_imprinted_head(tmp_path, tiny_corpus, capsys, monkeypatch):  # noqa: F811
    from voxmetric.training.finetune import imprint_head

    config = _load(tmp_path, tiny_corpus, ["training.imprint_head_chunks=2", "training.freeze_network_batches=3"],
                   epochs=1, batches_per_epoch=1)
    run = Trainer(config, tmp_path / "exp", progress=True)
    start = _snapshot(run.step.model)
    seen = {}
    original = Trainer._train_batch

    def first_step(self, waveforms, labels):
        seen.setdefault("head", self.step.loss.weight.detach().clone())
        return original(self, waveforms, labels)

    monkeypatch.setattr(Trainer, "_train_batch", first_step)
    run.run()
    assert "loss head imprinted: each of 4 classes starts at the mean direction of its 2 chunks' embeddings" \
        in capsys.readouterr().out
    # The same weights computed by hand from the starting network and the class batches.
    network, loss = build_model_and_loss(config, 4)
    network.load_state_dict(start)
    imprint_head(network, loss, run_batches := list(trainer_module.build_dataset(config, run.corpus).class_batches(2)),
                 torch.device("cpu"))
    assert len(run_batches) == 1
    torch.testing.assert_close(seen["head"], loss.weight.detach(), rtol=0, atol=1e-6)
    # Fixed on --resume.
    with pytest.raises(ConfigError, match=r"training\.imprint_head_chunks"):
        train(_load(tmp_path, tiny_corpus, ["training.imprint_head_chunks=4", "training.freeze_network_batches=3"],
                    epochs=2, batches_per_epoch=1), tmp_path / "exp", resume=True, progress=False)


def test_imprinting_is_refused_for_a_loss_without_class_weights(tmp_path, tiny_corpus):  # noqa: F811
    config = _load(tmp_path, tiny_corpus, ["loss.name=triplet", "training.imprint_head_chunks=2"])
    with pytest.raises(ConfigError, match="loss 'triplet' has none"):
        Trainer(config, tmp_path / "exp", progress=False)
    with pytest.raises(ConfigError, match=r"training\.imprint_head_chunks must be >= 0, got -1"):
        config_from_dict({"training": {"imprint_head_chunks": -1}})
