"""Deployment: one scoring path, calibration on your pairs, enrol/identify, quality, batch invariance."""

import json

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.cli import main
from voxmetric.data.trials import read_trials
from voxmetric.evaluate.pipeline import read_scores
from voxmetric.models import build_model
from voxmetric.inference.speaker_model import BUNDLED_DIR, SpeakerModel, load_model


def _bundled(name):
    assert (BUNDLED_DIR / f"{name}.safetensors").exists(), f"bundled weights of {name} are missing"
    return name


def test_verify_and_embed_score_give_identical_scores(shared_data, tmp_path):
    """`verify` and `embed` + `score` (+ `eval`) embed and score the same way."""
    model = load_model(_bundled("sinctdnn-aam"))
    root = shared_data / "real"
    trials = read_trials(root / "trials.txt")[:30]
    subset = tmp_path / "trials.txt"
    subset.write_text("".join(f"{t.label} {t.enrol} {t.test}\n" for t in trials))
    keys = sorted({k for t in trials for k in (t.enrol, t.test)})
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(keys))
    assert main(["embed", "sinctdnn-aam", "--list", str(listing), "--root", str(root), "--out",
                 str(tmp_path / "emb.npz"), "-q"]) == 0
    assert main(["score", "--trials", str(subset), "--embeddings", str(tmp_path / "emb.npz"),
                 "--out", str(tmp_path / "scores.txt")]) == 0
    scored = read_scores(str(tmp_path / "scores.txt"))
    for trial in trials:
        direct = model.verify(root / trial.enrol, root / trial.test).score
        assert scored[(trial.enrol, trial.test)] == pytest.approx(direct, abs=2e-6)


def test_enrol_identify_round_trip_on_the_built_in_corpus(tmp_path):
    from voxmetric.data.readers import read_voxceleb
    from voxmetric.data.synth.corpus import synthesize

    _bundled("sinctdnn-aam")
    synthesize(tmp_path / "corpus", speakers=5, utterances=4, seed=11, workers=1, progress=False)
    by_speaker = read_voxceleb(tmp_path / "corpus", progress=False).by_speaker()
    db = str(tmp_path / "speakers.db")
    for speaker, utterances in by_speaker.items():
        assert main(["enroll", "sinctdnn-aam", "--name", speaker, *[u.path for u in utterances[:3]],
                     "--db", db, "-q"]) == 0
    correct = 0
    for speaker, utterances in by_speaker.items():
        model = load_model("sinctdnn-aam")
        from voxmetric.deploy.enroll import identify

        result = identify(model, db, utterances[3].path, top=3)
        correct += result.candidates[0]["name"] == speaker
    assert correct >= 4  # of 5 unseen synthetic voices


def test_database_refuses_another_models_embeddings(tmp_path, capsys):
    _bundled("sinctdnn-aam"), _bundled("ecapa-aam")
    voice = tmp_path / "v.wav"
    audio.write(voice, _voice())
    db = str(tmp_path / "speakers.db")
    assert main(["enroll", "sinctdnn-aam", "--name", "alice", str(voice), "--db", db, "-q"]) == 0
    assert main(["identify", "ecapa-aam", str(voice), "--db", db]) == 1
    assert "different models cannot be compared" in capsys.readouterr().err
    assert main(["speakers", "sinctdnn-aam", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("alice\t1 recording")
    assert main(["verify", "sinctdnn-aam", "--db", db, "--name", "alice", str(voice), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == pytest.approx(1.0, abs=1e-5) and result["accepted"]
    capsys.readouterr()
    assert main(["speakers", "sinctdnn-aam", "--db", db, "--remove", "  alice "]) == 0  # found as enrolled
    assert capsys.readouterr().out == f"removed 'alice' from {db}\n"
    assert main(["verify", "sinctdnn-aam", "--db", db, "--name", "alice", str(voice)]) == 1
    assert "alice" in capsys.readouterr().err


def test_silent_file_is_an_error_not_a_score(tmp_path, capsys):
    _bundled("sinctdnn-aam")
    silent = tmp_path / "silent.wav"
    audio.write(silent, np.zeros(32000, dtype=np.float32))
    voice = tmp_path / "v.wav"
    audio.write(voice, _voice())
    assert main(["verify", "sinctdnn-aam", str(silent), str(voice)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("voxmetric: error:") and "silent.wav" in err and "no speech" in err


def test_quality_warnings_reach_verify_output(tmp_path, capsys):
    _bundled("sinctdnn-aam")
    short = tmp_path / "short.wav"
    audio.write(short, _voice(seconds=1.2))
    voice = tmp_path / "v.wav"
    audio.write(voice, _voice())
    assert main(["verify", "sinctdnn-aam", str(short), str(voice), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert any("short.wav" in w and "speech" in w for w in result["warnings"])


def test_calibrate_writes_a_file_verify_uses(shared_data, tmp_path, capsys):
    _bundled("sinctdnn-aam")
    out = tmp_path / "cal.json"
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(open(shared_data / "real" / "trials.txt").readlines()[:80]))
    assert main(["calibrate", "sinctdnn-aam", "--trials", str(trials), "--root", str(shared_data / "real"),
                 "--out", str(out), "--bootstrap", "100", "-q"]) == 0
    captured = capsys.readouterr()
    assert "EER" in captured.out and "threshold" in captured.out
    assert "fewer than" in captured.err  # 80 pairs: the interval is wide, and it says so
    saved = json.loads(out.read_text())
    model = load_model("sinctdnn-aam", calibration=out)
    assert model.threshold == pytest.approx(saved["threshold"])
    assert model.calibration.scale == pytest.approx(saved["calibration"]["scale"])


def _voice(seconds: float = 2.5, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(0.6 ** k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(6))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * ((t > 0.2) & (t < seconds - 0.2))
    return (0.3 * x / np.abs(x).max() + np.random.default_rng(0).normal(0, 0.002, t.size)).astype(np.float32)


@pytest.mark.parametrize("name, params", [
    ("sinctdnn", {"sinc_filters": 16, "conv_channels": 16, "tdnn_channels": 32, "tdnn_stats_channels": 64,
                  "embedding_dim": 16, "waveform_normalize": False, "instance_normalize": False}),
    ("sinctdnn", {"sinc_filters": 16, "conv_channels": 16, "tdnn_channels": 32, "tdnn_stats_channels": 64,
                  "embedding_dim": 16}),
    ("xvector", {"channels": 32, "stats_channels": 64, "embedding_dim": 16}),
    ("ecapa", {"channels": 32, "mfa_channels": 96, "attention_channels": 16, "se_channels": 16,
               "embedding_dim": 16}),
])
def test_embed_batch_equals_embedding_each_file_alone(name, params, rng):
    """No padding leaks into pooling or normalisation: a batch of different lengths is each file alone."""
    network = build_model(name, **params)
    model = SpeakerModel(network, name, vad=False).set_embedding(window_s=1.0, step_s=0.25)
    items = [rng.normal(0, 0.1, n).astype(np.float32) for n in (8000, 16000, 23456, 40000)]
    batch = model.embed_batch(items)
    for item, row in zip(items, batch):
        np.testing.assert_allclose(row, model.embed(item), atol=1e-5, rtol=0)
    np.testing.assert_allclose(model.embed_batch(items[::-1])[::-1], batch, atol=1e-5, rtol=0)


def test_a_calibration_file_of_another_model_is_refused(shared_data, tmp_path):
    from voxmetric.errors import VoxmetricError

    out = tmp_path / "cal.json"
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(open(shared_data / "real" / "trials.txt").readlines()[:40]))
    assert main(["calibrate", "ecapa-aam", "--trials", str(trials), "--root", str(shared_data / "real"),
                 "--out", str(out), "--bootstrap", "20", "-q"]) == 0
    assert load_model("ecapa-aam", calibration=out).threshold == pytest.approx(json.loads(out.read_text())["threshold"])
    with pytest.raises(VoxmetricError, match="calibration made for model 'ecapa-aam:sha256:"):
        load_model("sinctdnn-aam", calibration=out)
    with pytest.raises(VoxmetricError, match="no CUDA device|not a device"):
        load_model("sinctdnn-aam", device="bogus")
