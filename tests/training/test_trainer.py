"""Training end to end on a tiny generated corpus: train -> checkpoint -> resume -> embed -> score -> eval."""

import json

import numpy as np
import pytest
import torch
import yaml

from voxmetric import audio
from voxmetric.inference.checkpoint import load_checkpoint
from voxmetric.inference.loading import load_network
from voxmetric.cli import main
from voxmetric.training.config import load_config
from voxmetric.errors import ConfigError
from voxmetric.models import build_model
from voxmetric.training.trainer import Trainer, train

TINY_MODEL = {"name": "sinctdnn", "params": {"sinc_filters": 16, "conv_channels": 16, "tdnn_channels": 32,
                                             "tdnn_stats_channels": 64, "embedding_dim": 16}}


def _speaker_audio(speaker: int, utterance: int, duration_s: float = 1.5) -> np.ndarray:
    """A 'voice': harmonics of a speaker-specific F0 with a speaker-specific tilt, plus noise."""
    rng = np.random.default_rng([speaker, utterance])
    t = np.arange(int(duration_s * 16000)) / 16000
    f0 = 100.0 + 45.0 * speaker + rng.uniform(-3, 3)
    tilt = 0.5 + 0.15 * speaker
    x = sum(tilt ** k * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 6)) for k in range(8))
    x = x / np.abs(x).max() * 0.5 + rng.normal(0, 0.01, len(t))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """VoxCeleb layout: 4 training speakers x 3 files, 2 test speakers, a trial list."""
    root = tmp_path_factory.mktemp("corpus")
    for speaker in range(6):
        for utterance in range(3):
            audio.write(root / "wav" / f"spk{speaker}" / "v0" / f"{utterance}.wav", _speaker_audio(speaker, utterance))
    test = [f"spk{s}/v0/{u}.wav" for s in (4, 5) for u in range(3)]
    lines = []
    for i, a in enumerate(test):
        for b in test[i + 1:]:
            lines.append(f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}")
    (root / "trials.txt").write_text("\n".join(lines) + "\n")
    train_root = root / "train"
    for speaker in range(4):
        (train_root / f"spk{speaker}").mkdir(parents=True)
        for utterance in range(3):
            source = root / "wav" / f"spk{speaker}" / "v0" / f"{utterance}.wav"
            (train_root / f"spk{speaker}" / f"{utterance}.wav").symlink_to(source)
    return root


def _config(tmp_path, corpus, **training):
    data = {
        "seed": 3,
        "data": {"corpus": str(corpus / "train"), "format": "folders", "chunk_duration_s": 0.5,
                 "speakers_per_batch": 4, "chunks_per_speaker": 2, "min_speaker_duration_s": 1.0,
                 "num_workers": 0},
        "model": TINY_MODEL,
        "loss": {"name": "aam"},
        "optimizer": {"name": "adam", "lr": 0.005},
        "training": {"epochs": 2, "batches_per_epoch": 3, "log_every_batches": 1, **training},
        "frontend": {"vad": False, "window_s": 1.0, "step_s": 0.5},  # test tones, not speech
        "validation": {"trials": str(corpus / "trials.txt"), "root": str(corpus / "wav")},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _weights(checkpoint):
    return load_checkpoint(checkpoint)["model"]


def test_train_writes_the_documented_files(tmp_path, tiny_corpus):
    config = load_config(_config(tmp_path, tiny_corpus))
    result = train(config, tmp_path / "exp", progress=False)
    exp = tmp_path / "exp"
    assert (result.epochs_done, result.batches_done) == (2, 6)
    assert load_config(exp / "config.yml") == config  # the merged config is saved with the run
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    epochs = [r for r in records if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0.0 <= r["val_eer"] <= 100.0 for r in epochs)
    assert result.best_eer == min(r["val_eer"] for r in epochs)
    state = load_checkpoint(exp / "checkpoints" / "last.pt")
    assert state["batches_done"] == 6 and state["speakers"] == ["spk0", "spk1", "spk2", "spk3"]
    assert (exp / "checkpoints" / "best.pt").exists()


def test_resume_continues_exactly(tmp_path, tiny_corpus):
    straight = train(load_config(_config(tmp_path / "a", tiny_corpus)), tmp_path / "a" / "exp", progress=False)
    first = load_config(_config(tmp_path / "b", tiny_corpus, epochs=1))
    train(first, tmp_path / "b" / "exp", progress=False)
    second = load_config(_config(tmp_path / "b", tiny_corpus, epochs=2))
    resumed = train(second, tmp_path / "b" / "exp", resume=True, progress=False)
    assert resumed.batches_done == straight.batches_done == 6
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_resume_without_a_checkpoint_is_an_error(tmp_path, tiny_corpus):
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        train(load_config(_config(tmp_path, tiny_corpus)), tmp_path / "none", resume=True, progress=False)


def test_pair_losses_need_two_chunks_per_speaker(tmp_path, tiny_corpus):
    config = load_config(_config(tmp_path, tiny_corpus), ["loss.name=triplet", "data.chunks_per_speaker=1"])
    with pytest.raises(ConfigError, match="chunks_per_speaker >= 2"):
        train(config, tmp_path / "exp", progress=False)


def test_too_many_speakers_per_batch_is_rejected_before_work(tmp_path, tiny_corpus):
    config = load_config(_config(tmp_path, tiny_corpus), ["data.speakers_per_batch=9"])
    with pytest.raises(ConfigError, match="speakers_per_batch"):
        train(config, tmp_path / "exp", progress=False)
    assert not (tmp_path / "exp").exists()


def test_cli_train_embed_score_eval(tmp_path, tiny_corpus, capsys):
    config = _config(tmp_path, tiny_corpus, epochs=1)
    exp = tmp_path / "exp"
    assert main(["train", str(config), "--out", str(exp), "--quiet"]) == 0
    checkpoint = exp / "checkpoints" / "last.pt"
    files = tmp_path / "files.txt"
    keys = sorted({k for line in (tiny_corpus / "trials.txt").read_text().splitlines() for k in line.split()[1:]})
    files.write_text("\n".join(str(tiny_corpus / "wav" / k) for k in keys))
    emb = tmp_path / "emb.npz"
    assert main(["embed", str(checkpoint), "--list", str(files), "--out", str(emb), "--window", "1.0",
                 "--step", "0.5", "--no-vad", "--quiet"]) == 0
    # Trial keys are relative paths; make an embeddings file keyed like the trials.
    from voxmetric.evaluate.embeddings import load_embeddings, save_embeddings

    ids, matrix = load_embeddings(emb)
    assert matrix.shape == (len(keys), 16) and np.isfinite(matrix).all()
    save_embeddings(tmp_path / "keyed.npz", keys, matrix)
    scores = tmp_path / "scores.txt"
    assert main(["score", "--trials", str(tiny_corpus / "trials.txt"), "--embeddings", str(tmp_path / "keyed.npz"),
                 "--out", str(scores)]) == 0
    assert len(scores.read_text().splitlines()) == 15
    assert main(["eval", "--trials", str(tiny_corpus / "trials.txt"), "--scores", str(scores),
                 "--bootstrap", "20"]) == 0
    assert "EER" in capsys.readouterr().out

    # The embedding model loads back without pickle and embeds deterministically.
    model, state = load_network(checkpoint)[0], load_checkpoint(checkpoint)
    x = torch.from_numpy(_speaker_audio(0, 0)[None])
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x))
    assert state["config"]["model"]["name"] == "sinctdnn"


def test_bad_corpus_files_are_left_out_or_fatal_with_strict(tmp_path, tiny_corpus):
    import shutil
    import warnings as python_warnings

    from voxmetric.errors import CorpusError
    from voxmetric.training.trainer import build_corpus

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "train", corpus, symlinks=False)
    (corpus / "spk0" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    config = load_config(_config(tmp_path, tiny_corpus), [f"data.corpus={corpus}"])
    with python_warnings.catch_warnings(record=True) as caught:
        python_warnings.simplefilter("always")
        kept = build_corpus(config)
    assert len(kept) == 12 and any("broken.wav" in str(w.message) for w in caught)
    config.data.strict = True
    with pytest.raises(CorpusError, match="broken.wav"):
        build_corpus(config)


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path, tiny_corpus):
    """`torchrun --nproc_per_node 2 voxmetric train`: gloo backend, rank 0 alone writes."""
    import os
    import subprocess
    import sys

    config = _config(tmp_path, tiny_corpus, epochs=1)
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "voxmetric.cli", "train", str(config), "--out", str(exp), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training done: 1 epochs, 3 batches") == 2  # both ranks finish
    state = load_checkpoint(exp / "checkpoints" / "last.pt")
    assert state["batches_done"] == 3
    epochs = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert len(epochs) == 1 and epochs[0]["val_eer"] is not None  # one writer: rank 0
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_resume_refuses_a_changed_model_or_optimizer(tmp_path, tiny_corpus):
    path = _config(tmp_path, tiny_corpus, epochs=1)
    train(load_config(path, ["validation.trials=null"]), tmp_path / "exp", progress=False)
    for override, name in (("model.params.embedding_dim=8", "model.params"), ("optimizer.name=sgd", "optimizer.name"),
                           ("loss.name=coco", "loss.name")):
        with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
            train(load_config(path, ["validation.trials=null", override]), tmp_path / "exp", resume=True,
                  progress=False)
    again = load_config(path, ["validation.trials=null", "training.epochs=2", "data.num_workers=1"])
    assert train(again, tmp_path / "exp", resume=True, progress=False).batches_done == 6


def test_a_fresh_run_never_mixes_with_an_earlier_one(tmp_path, tiny_corpus):
    path = _config(tmp_path, tiny_corpus, epochs=1)
    train(load_config(path), tmp_path / "exp", progress=False)
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(load_config(path), tmp_path / "exp", progress=False)
    result = train(load_config(path, ["validation.trials=null"]), tmp_path / "exp", progress=False, overwrite=True)
    assert result.best_checkpoint is None  # the earlier run's best.pt is gone
    assert len((tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()) == 4  # 3 batches + 1 epoch


def test_data_split_keeps_the_training_speakers_of_the_built_in_corpus(tmp_path):
    from voxmetric.training.config import config_from_dict
    from voxmetric.data.synth.corpus import synthesize
    from voxmetric.data.trials import read_trials
    from voxmetric.training.trainer import build_corpus

    synthesize(tmp_path / "corpus", speakers=10, utterances=2, seed=2, workers=1, progress=False)
    splits = json.loads((tmp_path / "corpus" / "splits.json").read_text())
    config = config_from_dict({"data": {"corpus": str(tmp_path / "corpus"), "format": "voxceleb", "split": "train",
                                        "speakers_per_batch": 2, "min_speaker_duration_s": 0.0}})
    speakers = build_corpus(config).speakers
    assert speakers == sorted(splits["train"])
    test_speakers = {key.split("/")[0] for t in read_trials(tmp_path / "corpus" / "test_trials.txt")
                     for key in (t.enrol, t.test)}
    assert test_speakers and not test_speakers & set(speakers)
    config.data.split = "holdout"
    with pytest.raises(ConfigError, match="'holdout' is not in"):
        build_corpus(config)


def test_pooled_corpora_with_colliding_names(tmp_path, tiny_corpus):
    """Two corpora whose file ids collide are refused naming both; a speaker name in two folders is noted."""
    import shutil

    from voxmetric.errors import CorpusError
    from voxmetric.training.config import config_from_dict
    from voxmetric.training.setup import describe_run
    from voxmetric.training.trainer import build_corpus

    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_corpus / "train", first)
    shutil.copytree(tiny_corpus / "train", second)
    data = {"format": "folders", "speakers_per_batch": 2, "min_speaker_duration_s": 0.0}
    config = config_from_dict({"data": {**data, "corpus": [str(first), str(second)]}})
    with pytest.raises(CorpusError, match=f"'spk0/.*' is in both {first} and {second}"):
        build_corpus(config)

    # The same speaker name with other files: one speaker, and the run says so.
    for wav in sorted((second / "spk0").iterdir()):
        wav.rename(wav.with_name("other-" + wav.name))
    for other in ("spk1", "spk2", "spk3"):
        shutil.rmtree(second / other)
    config = config_from_dict({"data": {**data, "corpus": [str(first), str(second)]}})
    corpus = build_corpus(config)
    assert len(corpus.speakers) == len(build_corpus(config_from_dict({"data": {**data, "corpus": str(first)}})).speakers)
    note = [line for line in describe_run(config, corpus) if line.startswith("note:")]
    assert len(note) == 1 and "1 speaker name(s)" in note[0] and f"'spk0' in {first} and {second}" in note[0]
    single = config_from_dict({"data": {**data, "corpus": str(first)}})
    assert not [line for line in describe_run(single, build_corpus(single)) if line.startswith("note:")]


def test_kaldi_trials_of_utterance_ids_evaluate(tmp_path, tiny_corpus):
    from voxmetric.data.kaldi import write_kaldi_dir
    from voxmetric.data.readers import read_voxceleb
    from voxmetric.data.trials import read_trials
    from voxmetric.evaluate.pipeline import evaluate_trials

    corpus = read_voxceleb(tiny_corpus, progress=False)
    trials = read_trials(tiny_corpus / "trials.txt")
    write_kaldi_dir(corpus, tmp_path / "kaldi", trials=trials)
    from voxmetric.inference.frontend import Frontend, FrontendSettings

    model = Frontend(build_model(TINY_MODEL["name"], **TINY_MODEL["params"]),
                     FrontendSettings(vad=False, window_s=1.0, step_s=0.5))
    as_kaldi = evaluate_trials(model, tmp_path / "kaldi" / "trials", n_bootstrap=0, progress=False)
    as_voxceleb = evaluate_trials(model, tiny_corpus / "trials.txt", n_bootstrap=0, progress=False)
    np.testing.assert_allclose(as_kaldi["scores"], as_voxceleb["scores"], atol=1e-6)


def test_distillation_adds_the_weighted_relational_loss_and_keeps_the_teacher_out(tmp_path, tiny_corpus):
    from voxmetric.losses import build_loss
    from voxmetric.losses.distill import relational_distillation
    from voxmetric.training.setup import TrainStep

    teacher_run = train(load_config(_config(tmp_path / "t", tiny_corpus, epochs=1), ["validation.trials=null"]),
                        tmp_path / "t" / "exp", progress=False)
    teacher_path = teacher_run.last_checkpoint
    teacher_before = {k: v.clone() for k, v in _weights(teacher_path).items()}

    # The step's loss is the training loss plus weight x the relational loss, exactly.
    torch.manual_seed(0)
    student = build_model(TINY_MODEL["name"], **TINY_MODEL["params"])
    teacher = build_model(TINY_MODEL["name"], **TINY_MODEL["params"]).eval()
    head = build_loss("aam", embedding_dim=16, num_speakers=4)
    step = TrainStep(student, head, teacher, distill_weight=7.0)
    waveforms, labels = torch.randn(4, 8000), torch.tensor([0, 1, 2, 3])
    loss, embeddings = step(waveforms, labels)
    with torch.no_grad():
        expected = head(embeddings.float(), labels) + 7.0 * relational_distillation(embeddings, teacher(waveforms))
    torch.testing.assert_close(loss.detach(), expected)
    assert not any(name.startswith("teacher") for name in step.state_dict())
    assert all(p.requires_grad for p in step.parameters())  # the teacher's are not among them
    step.double()  # moves and casts reach the teacher
    assert next(teacher.parameters()).dtype == torch.float64

    # A run with a teacher: it says so, trains, leaves the teacher's file alone, saves no teacher.
    path = _config(tmp_path / "s", tiny_corpus, epochs=1)
    distilled = load_config(path, ["validation.trials=null", f"distill.teacher={teacher_path}", "distill.weight=50"])
    result = train(distilled, tmp_path / "s" / "exp", progress=False)
    plain = train(load_config(path, ["validation.trials=null"]), tmp_path / "s" / "plain", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "s" / "exp" / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    plain_losses = [json.loads(line)["loss"] for line in (tmp_path / "s" / "plain" / "metrics.jsonl").read_text()
                    .splitlines() if '"loss"' in line]
    assert losses[0] > plain_losses[0]  # same first batch, same start: the distillation term on top
    state = load_checkpoint(result.last_checkpoint)
    assert not any(name.startswith("teacher") for name in state["model"])
    for name, tensor in _weights(teacher_path).items():
        torch.testing.assert_close(tensor, teacher_before[name], rtol=0, atol=0)
    # The teacher and weight are fixed on --resume.
    with pytest.raises(ConfigError, match=r"distill\.weight"):
        train(load_config(path, ["validation.trials=null", f"distill.teacher={teacher_path}", "distill.weight=5",
                                 "training.epochs=2"]), tmp_path / "s" / "exp", resume=True, progress=False)


def test_distillation_alone_trains_the_network_on_the_teacher_and_never_the_head(tmp_path, tiny_corpus, capsys):
    from voxmetric.losses import build_loss
    from voxmetric.losses.distill import (embedding_distillation, relational_distillation,
                                          softmax_relational_distillation)
    from voxmetric.training.setup import TrainStep

    torch.manual_seed(0)
    student = build_model(TINY_MODEL["name"], **TINY_MODEL["params"])
    teacher = build_model(TINY_MODEL["name"], **TINY_MODEL["params"]).eval()
    head = build_loss("aam", embedding_dim=16, num_speakers=4)
    step = TrainStep(student, head, teacher, distill_weight=3.0, label_loss=False)
    waveforms, labels = torch.randn(4, 8000), torch.tensor([0, 1, 2, 3])
    loss, embeddings = step(waveforms, labels)
    with torch.no_grad():
        expected = 3.0 * relational_distillation(embeddings, teacher(waveforms))
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert all(p.grad is None for p in head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    with pytest.raises(ValueError, match="needs a teacher"):
        TrainStep(student, head, None, label_loss=False)
    softmax_step = TrainStep(student, head, teacher, distill_weight=3.0, label_loss=False, distill_kind="softmax",
                             temperature=0.2)
    loss, embeddings = softmax_step(waveforms, labels)
    with torch.no_grad():
        expected = 3.0 * softmax_relational_distillation(embeddings, teacher(waveforms), 0.2)
    torch.testing.assert_close(loss.detach(), expected)
    loss, embeddings = TrainStep(student, head, teacher, label_loss=False, distill_kind="embedding")(waveforms, labels)
    with torch.no_grad():
        expected = embedding_distillation(embeddings, teacher(waveforms))
    torch.testing.assert_close(loss.detach(), expected)
    wide_teacher = build_model(TINY_MODEL["name"], **{**TINY_MODEL["params"], "embedding_dim": 24})
    with pytest.raises(ConfigError, match="embedding_dim is 16, the teacher's 24"):
        TrainStep(student, head, wide_teacher, label_loss=False, distill_kind="embedding")

    # A run: the network moves, the head stays where it started, the log says what trains it.
    teacher_run = train(load_config(_config(tmp_path / "t", tiny_corpus, epochs=1), ["validation.trials=null"]),
                        tmp_path / "t" / "exp", progress=False)
    path = _config(tmp_path / "s", tiny_corpus, epochs=1)
    settings = ["validation.trials=null", f"distill.teacher={teacher_run.last_checkpoint}", "distill.label_loss=false"]
    trainer = Trainer(load_config(path, settings), tmp_path / "s" / "exp", progress=True)
    initial = {"model": {k: v.clone() for k, v in trainer.step.model.state_dict().items()},
               "loss": {k: v.clone() for k, v in trainer.step.loss.state_dict().items()}}
    trained = load_checkpoint(trainer.run().last_checkpoint)
    assert "no aam loss: the teacher alone" in capsys.readouterr().out
    for name, tensor in initial["loss"].items():
        torch.testing.assert_close(trained["loss"][name], tensor, rtol=0, atol=0)
    assert any(not torch.equal(trained["model"][name], tensor) for name, tensor in initial["model"].items())
    # Without a teacher, or with head-only batches, there would be nothing to train.
    with pytest.raises(ConfigError, match=r"distill\.label_loss is false but distill\.teacher is not set"):
        load_config(path, ["distill.label_loss=false"])
    with pytest.raises(ConfigError, match=r"training\.freeze_network_batches"):
        load_config(path, settings + ["training.freeze_network_batches=2"])
    with pytest.raises(ConfigError, match=r"distill\.kind must be one of relational, softmax, embedding, got 'kl'"):
        load_config(path, settings + ["distill.kind=kl"])
    with pytest.raises(ConfigError, match=r"distill\.temperature must be positive"):
        load_config(path, settings + ["distill.kind=softmax", "distill.temperature=0"])


def test_speed_perturbation_trains_one_class_per_speaker_and_factor(tmp_path, tiny_corpus, capsys):
    config = load_config(_config(tmp_path, tiny_corpus, epochs=1),
                         ["validation.trials=null", "data.speed_perturb=[0.9, 1.1]", "data.speakers_per_batch=6"])
    result = train(config, tmp_path / "exp", progress=True)
    state = load_checkpoint(result.last_checkpoint)
    assert state["speakers"] == [f"spk{i}" for i in range(4)] + [f"spk{i}@speed0.9" for i in range(4)] + \
        [f"spk{i}@speed1.1" for i in range(4)]
    assert state["loss"]["weight"].shape[0] == 12  # one AAM class per speaker and speed
    assert "speed-perturbed copies x 0.9, x 1.1: 12 classes" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="speed_perturb"):
        load_config(_config(tmp_path / "bad", tiny_corpus), ["data.speed_perturb=[1.0]"])
