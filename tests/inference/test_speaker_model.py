"""Pretrained models: weights files, load_model, SpeakerModel, verify, hub, fine-tuning.

Most tests use a tiny SincTDNN exported to a weights file here; the ``bundled``
tests run against the shipped ``voxmetric/inference/bundled/*.safetensors`` (skipped until
they are built).
"""

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from voxmetric import audio
from voxmetric.inference import loading
from voxmetric.inference import speaker_model as pretrained
from voxmetric.inference.checkpoint import save_checkpoint
from voxmetric.cli import main
from voxmetric.audio.quality import NoSpeechError
from voxmetric.errors import AudioError, CheckpointError, VoxmetricError
from voxmetric.evaluate.calibration import Calibration
from voxmetric.inference.export import export_pretrained, update_manifest
from voxmetric.models import build_model
from voxmetric.inference.speaker_model import BUNDLED, SpeakerModel, load_model, load_network_weights
from voxmetric.inference.weights import read_weights

from ..conftest import REPO_ROOT
from ..training.test_trainer import TINY_MODEL, _config, tiny_corpus  # noqa: F401  (fixture)

SETTINGS = {"window_s": 1.0, "step_s": 0.5, "rms_dbfs": None}


def make_checkpoint(path: Path, model=TINY_MODEL, seed: int = 0) -> Path:
    """A training checkpoint of a freshly initialised (untrained) network."""
    torch.manual_seed(seed)
    network = build_model(model["name"], **model["params"])
    save_checkpoint({"config": {"model": model}, "model": network.state_dict(), "speakers": ["a", "b"]}, path)
    return path


def make_weights(directory: Path, name: str = "tiny", model=TINY_MODEL, **overrides) -> Path:
    """A tiny exported weights file: calibration 10 * cos - 5, threshold 0.5."""
    checkpoint = make_checkpoint(directory / f"{name}.pt", model)
    options = {"calibration": {"scale": 10.0, "offset": -5.0}, "threshold": 0.5, "embedding_settings": SETTINGS,
               "description": "tiny test model", "training_info": {"data": "none"}, **overrides}
    out = directory / f"{name}.safetensors"
    export_pretrained(checkpoint, out, **options)
    return out


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def fake_bundled(tmp_path, monkeypatch, tiny_weights) -> Path:
    """A bundled-weights folder holding the tiny model as 'sinctdnn-aam', with its manifest."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copy(tiny_weights, folder / "sinctdnn-aam.safetensors")
    update_manifest(folder)
    monkeypatch.setattr(loading, "BUNDLED_DIR", folder)
    return folder


def _voice(seconds: float = 2.0, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonics with a syllable-rate (4 Hz) envelope and quiet edges: what the VAD calls speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(0.6 ** k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(6))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * ((t > 0.2) & (t < seconds - 0.2))
    x = x + rng.normal(0, 0.003, t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


# --- the weights file ---------------------------------------------------------------------


def test_weights_file_holds_float16_tensors_and_json_metadata(tiny_weights, tmp_path):
    with safe_open(str(tiny_weights), framework="pt") as f:
        raw = f.metadata()
        dtypes = {key: f.get_tensor(key).dtype for key in f.keys()}
    assert raw["format"] == "voxmetric-embedding-model/1"
    assert json.loads(raw["model"]) == {"name": "sincnet_tdnn", "params": TINY_MODEL["params"]}
    assert json.loads(raw["calibration"]) == {"scale": 10.0, "offset": -5.0}
    assert json.loads(raw["embedding"]) == {"vad": True, **SETTINGS}
    assert json.loads(raw["threshold"]) == 0.5 and json.loads(raw["description"]) == "tiny test model"
    assert json.loads(raw["training"]) == {"data": "none"}
    assert {d for k, d in dtypes.items() if k.endswith("num_batches_tracked")} == {torch.int64}
    assert {d for k, d in dtypes.items() if not k.endswith("num_batches_tracked")} == {torch.float16}

    state, metadata = read_weights(tiny_weights)
    assert all(v.dtype == torch.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert metadata["calibration"] == Calibration(10.0, -5.0) and metadata["threshold"] == 0.5
    # the same checkpoint exports to the same bytes
    again = make_weights(tmp_path)
    assert again.read_bytes() == tiny_weights.read_bytes()


def test_export_reports_the_float16_rounding_loss(tmp_path):
    report = export_pretrained(make_checkpoint(tmp_path / "c.pt"), tmp_path / "w.safetensors", calibration=None,
                               threshold=None, embedding_settings={}, description="x")
    assert report["min_cosine_vs_float32"] > 0.999
    assert report["bytes"] == (tmp_path / "w.safetensors").stat().st_size


def test_tampered_bundled_file_is_refused_with_a_clear_error(fake_bundled):
    assert load_model("sinctdnn-aam").name == "sinctdnn-aam"
    path = fake_bundled / "sinctdnn-aam.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch.*reinstall voxmetric"):
        load_model("sinctdnn-aam")


def test_bundled_file_missing_from_the_manifest_is_refused(fake_bundled):
    (fake_bundled / "manifest.json").write_text(json.dumps({"format": "x", "files": {}}))
    with pytest.raises(CheckpointError, match="not listed.*reinstall"):
        load_model("sinctdnn-aam")


def test_bundled_model_not_built_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "BUNDLED_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="bundled model 'ecapa-aam' is not installed"):
        load_model("ecapa-aam")


@pytest.mark.parametrize("content, message", [
    (b"\x00" * 7, "unreadable or corrupt weights file"),
    (b"\xff" * 64, "unreadable or corrupt weights file"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ", "unreadable or corrupt weights file"),
])
def test_corrupt_weights_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_truncated_and_foreign_safetensors_are_refused(tmp_path, tiny_weights):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(truncated)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a voxmetric weights file"):
        load_model(foreign)


def test_unknown_name_lists_the_bundled_models():
    with pytest.raises(CheckpointError, match="neither a bundled model \\(sinctdnn-aam, ecapa-aam\\)"):
        load_model("sinctdnn-aam-v9")


# --- load_model and SpeakerModel ----------------------------------------------------------


def test_weights_file_without_threshold_or_calibration_loads_without_them(tiny_weights, tmp_path):
    from voxmetric.inference.weights import write_weights

    state, metadata = read_weights(tiny_weights)
    bare = {key: value for key, value in metadata.items() if key not in ("threshold", "calibration")}
    bare["embedding"] = metadata["embedding"].to_dict()
    write_weights(tmp_path / "bare.safetensors", state, bare)
    model = load_model(tmp_path / "bare.safetensors")
    assert model.threshold is None and model.calibration is None and model.embedding_dim == 16


def test_weights_file_and_checkpoint_load_the_same_network(tiny_weights, tmp_path):
    from_file = load_model(tiny_weights)
    from_checkpoint = load_model(make_checkpoint(tmp_path / "c.pt"))
    assert from_file.embedding_dim == from_checkpoint.embedding_dim == 16
    assert from_file.calibration == Calibration(10.0, -5.0) and from_file.threshold == 0.5
    assert from_checkpoint.calibration is None and from_checkpoint.threshold is None
    voice = _voice()
    from_checkpoint.set_embedding(**SETTINGS)
    assert SpeakerModel.cosine(from_file.embed(voice), from_checkpoint.embed(voice)) > 0.999  # float16 rounding


def test_embeddings_are_deterministic_and_inputs_are_normalised(tiny_weights, tmp_path):
    model = load_model(tiny_weights)
    voice = _voice()
    reference = model.embed(voice)
    assert reference.shape == (16,) and reference.dtype == np.float32
    np.testing.assert_array_equal(model.embed(voice), reference)
    audio.write(tmp_path / "v.wav", voice, subtype="FLOAT")
    np.testing.assert_allclose(model.embed(tmp_path / "v.wav"), reference, atol=1e-6)
    np.testing.assert_allclose(model.embed(torch.from_numpy(voice)), reference, atol=1e-6)
    pcm = np.round(voice * 32767).astype(np.int16)
    assert SpeakerModel.cosine(model.embed(pcm), reference) > 0.9999
    stereo = np.stack([voice, voice], axis=1)
    np.testing.assert_allclose(model.embed(stereo), reference, atol=1e-6)
    np.testing.assert_allclose(model.embed(stereo.T), reference, atol=1e-6)
    at_8k = audio.resample(voice, 16000, 8000)
    np.testing.assert_allclose(model.embed(at_8k, sample_rate=8000),
                               model.embed(audio.resample(at_8k, 8000, 16000)), atol=1e-6)
    batch = model.embed_batch([voice, tmp_path / "v.wav"])
    assert batch.shape == (2, 16)
    np.testing.assert_allclose(batch[0], reference, atol=1e-6)


def test_progress_bar_of_many_files_stays_out_of_a_redirected_stderr(tiny_weights, capsys):
    model = load_model(tiny_weights)
    assert model.embed_files([_voice(), _voice(seed=1)], progress=True).shape == (2, 16)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no carriage-return redraws


def test_bad_inputs_give_clear_errors(tiny_weights, tmp_path):
    model = load_model(tiny_weights)
    with pytest.raises(NoSpeechError, match="input array: no speech found"):
        model.embed(np.zeros(32000, dtype=np.float32))
    with pytest.raises(AudioError, match="silent"):
        load_model(tiny_weights, vad=False).embed(np.zeros(32000, dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        model.embed(np.full(32000, np.nan, dtype=np.float32))
    with pytest.raises(NoSpeechError, match="no speech found in 0.05 s"):
        model.embed(_voice(0.05))
    with pytest.raises(AudioError, match="input array: .*needs at least"):
        load_model(tiny_weights, vad=False).embed(_voice(0.05))
    with pytest.raises(AudioError, match="unsupported sample type"):
        model.embed(np.ones(32000, dtype=np.uint8))
    with pytest.raises(AudioError, match="at most 8 channels"):
        model.embed(np.ones((32000, 20), dtype=np.float32))
    with pytest.raises(AudioError, match="no such file"):
        model.embed(tmp_path / "missing.wav")
    for rate in (0, -16000, 100, 16000.5, "16k", 10**9, True):
        with pytest.raises(AudioError, match=rf"input array: sample rate {rate!r} must be a whole number of Hz "
                                             rf"from 4000 to 384000"):
            model.embed(_voice(1.0), sample_rate=rate)


def test_files_and_arrays_mix_with_a_rate_for_the_arrays(tiny_weights, tmp_path):
    model = load_model(tiny_weights)
    path = tmp_path / "v.wav"
    audio.write(path, _voice(2.0))
    at_8k = audio.resample(_voice(2.0), 16000, 8000)
    both = model.embed_batch([at_8k, path], sample_rate=8000)
    np.testing.assert_array_equal(both[1], model.embed(path))
    np.testing.assert_array_equal(both[0], model.embed(at_8k, sample_rate=8000))
    assert np.isfinite(model.verify(at_8k, path, sample_rate=8000).score)


def test_wrong_values_in_the_python_api_are_voxmetric_errors(tiny_weights, tmp_path):
    from voxmetric.errors import ArgumentError, CheckpointError, ConfigError, SpeakerDBError
    from voxmetric.deploy.enroll import enroll, identify

    model = load_model(tiny_weights)
    voice = _voice(1.0)
    with pytest.raises(NoSpeechError, match="^input array b: no speech found"):  # which side is silent
        model.verify(voice, np.zeros(32000, dtype=np.float32))
    for threshold in (float("nan"), "x", float("inf")):
        with pytest.raises(ArgumentError, match="threshold must be a finite number"):
            model.verify(voice, voice, threshold=threshold)
    with pytest.raises(CheckpointError, match="give a bundled model name"):
        load_model(None)
    with pytest.raises(ArgumentError, match="vad must be True or False"):
        load_model(tiny_weights, vad="no")
    with pytest.raises(ArgumentError, match="calibration must be"):
        load_model(tiny_weights, calibration={"scale": 1})
    with pytest.raises(ArgumentError, match="calibration scale must be a finite number, got nan"):
        load_model(tiny_weights, calibration={"scale": float("nan"), "offset": 0})
    with pytest.raises(ArgumentError, match="unknown front-end setting 'foo'"):
        model.set_frontend(foo=1)
    with pytest.raises(ArgumentError, match="window_s must be a positive number"):
        model.set_frontend(window_s=-1)
    with pytest.raises(ConfigError):
        model.to("gpu")
    for one in ("a.wav", voice):  # one input where a list belongs: not taken apart
        with pytest.raises(ArgumentError, match="give a list of files or arrays"):
            model.embed_batch(one)
    with pytest.raises(ArgumentError, match="enroll: give a list"):
        enroll(model, tmp_path / "s.db", "carol", "a.wav")
    with pytest.raises(VoxmetricError, match="enroll 'dave': no recordings given"):
        enroll(model, tmp_path / "s.db", "dave", [])
    path = tmp_path / "v.wav"
    audio.write(path, voice)
    enroll(model, tmp_path / "s.db", "erin", [path])
    with pytest.raises(SpeakerDBError, match="top must be a whole number"):
        identify(model, tmp_path / "s.db", path, top="2")


def test_rms_normalisation_makes_embeddings_level_independent(tmp_path):
    # Without VAD: its absolute floor (-60 dBFS) may trim a very quiet copy differently.
    model = load_model(make_weights(tmp_path, embedding_settings={**SETTINGS, "rms_dbfs": -26.0}), vad=False)
    voice = _voice()
    np.testing.assert_allclose(model.embed(0.05 * voice), model.embed(voice), atol=1e-5)
    level = 20 * np.log10(np.sqrt(np.mean(model.waveform(voice).astype(np.float64) ** 2)))
    assert level == pytest.approx(-26.0, abs=1e-3)


def test_same_input_scores_one_and_is_accepted(tiny_weights):
    model = load_model(tiny_weights)
    voice = _voice()
    result = model.verify(voice, voice)
    assert result.score == pytest.approx(1.0, abs=1e-6)
    assert result.llr == pytest.approx(5.0, abs=1e-4) and result.accepted and result.threshold == 0.5
    # _voice holds harmonics up to 840 Hz only: band-limited to the quality report, once per input.
    assert result.to_dict() == {"score": result.score, "llr": result.llr, "accepted": True, "threshold": 0.5,
                                "warnings": list(result.warnings)}
    assert len(result.warnings) == 2 and all("band-limited audio" in w for w in result.warnings)
    other = _voice(f0=230.0, seed=1)
    assert model.score(voice, other) == pytest.approx(model.score(other, voice))


def test_verify_threshold_rules(tmp_path, tiny_weights):
    voice = _voice()
    # calibration only: the Bayes threshold at P_target = 0.5 (LLR 0)
    calibrated = load_model(make_weights(tmp_path, name="c", threshold=None))
    assert calibrated.verify(voice, voice).threshold == pytest.approx(0.5)
    # threshold only: no LLR
    thresholded = load_model(make_weights(tmp_path, name="t", calibration=None, threshold=0.3))
    result = thresholded.verify(voice, voice)
    assert result.llr is None and result.threshold == 0.3 and result.accepted
    # neither (a training checkpoint): a clear error, unless given at load or call time
    checkpoint = load_model(make_checkpoint(tmp_path / "c.pt"))
    with pytest.raises(VoxmetricError, match="no calibration and no decision threshold.*voxmetric calibrate.*--calibration"):
        checkpoint.verify(voice, voice)
    assert checkpoint.verify(voice, voice, threshold=0.9).accepted
    recalibrated = load_model(make_checkpoint(tmp_path / "c.pt"), calibration={"scale": 2.0, "offset": -1.0})
    assert recalibrated.verify(voice, voice).llr == pytest.approx(1.0, abs=1e-4)


def test_no_network_access_is_needed(fake_bundled, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = load_model("sinctdnn-aam")
    assert model.embed(_voice()).shape == (16,)


def test_to_device_returns_the_model(tiny_weights):
    model = load_model(tiny_weights)
    assert model.to("cpu") is model and model.device == torch.device("cpu")
    assert "embedding_dim=16" in repr(model)
    assert next(model.network.parameters()).device.type == "cpu"


# --- command line -------------------------------------------------------------------------


def test_cli_verify_prints_score_llr_and_decision(fake_bundled, tmp_path, capsys):
    audio.write(tmp_path / "a.wav", _voice())
    audio.write(tmp_path / "b.wav", _voice(f0=220.0, seed=2))
    assert main(["verify", "sinctdnn-aam", str(tmp_path / "a.wav"), str(tmp_path / "a.wav")]) == 0
    out = capsys.readouterr().out
    assert "score 1.0000" in out and "LLR +5.000" in out and "decision: same speaker" in out
    assert main(["verify", "sinctdnn-aam", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"enrol", "test", "model", "score", "llr", "accepted", "threshold", "warnings"}
    assert result["accepted"] == (result["score"] >= result["threshold"])


def test_cli_verify_errors_are_one_line(tiny_weights, tmp_path, capsys):
    assert main(["verify", str(tiny_weights), str(tmp_path / "nope.wav"), str(tmp_path / "nope.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("voxmetric: error: ") and "nope.wav: no such file" in err and err.count("\n") == 1


def test_cli_embed_accepts_bundled_names(fake_bundled, tmp_path, capsys):
    from voxmetric.evaluate.embeddings import load_embeddings

    audio.write(tmp_path / "a.wav", _voice())
    assert main(["embed", "sinctdnn-aam", str(tmp_path / "a.wav"), "--out", str(tmp_path / "e.npz"), "-q"]) == 0
    ids, matrix = load_embeddings(tmp_path / "e.npz")
    assert ids == [str(tmp_path / "a.wav")] and matrix.shape == (1, 16)
    expected = load_model("sinctdnn-aam").embed(tmp_path / "a.wav")  # the model's own window / step
    np.testing.assert_allclose(matrix[0], expected, atol=1e-6)


# --- torch.hub ----------------------------------------------------------------------------


def test_hub_entry_point_loads_the_bundled_model(fake_bundled):
    model = torch.hub.load(str(REPO_ROOT), "sinctdnn_aam", source="local")
    assert isinstance(model, SpeakerModel) and model.name == "sinctdnn-aam"
    # torch.hub.list / help only read GitHub repositories: check the entry points directly.
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO_ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # torch.hub checks `dependencies` before loading: each of voxmetric's requirements that loading
    # a bundled model imports must be listed, so that a missing one gets torch.hub's message.
    import subprocess
    import sys

    requirements = ["torch", "numpy", "scipy", "soundfile", "yaml", "tqdm", "matplotlib", "safetensors"]
    code = ("import sys; from voxmetric.inference.speaker_model import load_model; load_model('sinctdnn-aam'); "
            f"print(' '.join(n for n in {requirements!r} if n in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {"torch", "safetensors"} <= set(imported) and set(imported) <= set(hubconf.dependencies)
    assert "SincNet" in hubconf.sinctdnn_aam.__doc__ and "ECAPA" in hubconf.ecapa_aam.__doc__
    assert hubconf.sinctdnn_aam(device="cpu").name == "sinctdnn-aam"


# --- fine-tuning (init_from) --------------------------------------------------------------


def test_load_network_weights_from_file_checkpoint_and_name(tiny_weights, fake_bundled, tmp_path):
    state, _ = read_weights(tiny_weights)
    for source in (tiny_weights, "sinctdnn-aam", make_checkpoint(tmp_path / "c.pt")):
        network = build_model(TINY_MODEL["name"], **TINY_MODEL["params"])
        assert load_network_weights(network, source)["name"] in ("sinctdnn", "sincnet_tdnn")
        loaded = network.state_dict()
        for key, value in state.items():
            torch.testing.assert_close(loaded[key], value, atol=2e-3, rtol=2e-3)  # file is float16


def test_load_network_weights_with_another_architecture_is_a_clear_error(tiny_weights):
    network = build_model("sinctdnn", **{**TINY_MODEL["params"], "embedding_dim": 8})
    with pytest.raises(CheckpointError, match="do not fit the SincTDNN architecture.*make the config's model"):
        load_network_weights(network, tiny_weights)


@pytest.mark.slow
def test_fine_tuning_from_an_exported_model(tmp_path, tiny_corpus, tiny_weights):  # noqa: F811
    from voxmetric.training.config import load_config
    from voxmetric.training.trainer import build_model_and_loss, train

    config = load_config(_config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=2),
                         [f"init_from={tiny_weights}"])
    network, _ = build_model_and_loss(config, num_speakers=4)
    state, _ = read_weights(tiny_weights)
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    result = train(config, tmp_path / "exp", progress=False)
    assert result.batches_done == 2 and Path(result.last_checkpoint).exists()
    tuned = load_model(result.last_checkpoint)
    assert np.isfinite(tuned.embed(_voice())).all()


# --- the bundled models -------------------------------------------------------------------


def _bundled(name: str) -> SpeakerModel:
    assert (pretrained.BUNDLED_DIR / f"{name}.safetensors").exists(), f"bundled weights of {name} are missing"
    return load_model(name)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_loads_offline_and_is_deterministic(name, monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    model = _bundled(name)
    assert model.name == name and model.calibration is not None and model.threshold is not None
    voice = _voice(3.5)
    first = model.embed(voice)
    np.testing.assert_array_equal(model.embed(voice), first)
    result = model.verify(voice, voice)
    assert result.score == pytest.approx(1.0, abs=1e-5) and result.accepted and result.llr > 0


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_hub_entry_point(name):
    _bundled(name)
    model = torch.hub.load(str(REPO_ROOT), name.replace("-", "_"), source="local")
    assert isinstance(model, SpeakerModel) and model.name == name


def _real_trials(root: Path, per_class: int) -> list[tuple[int, str, str]]:
    """The first ``per_class`` target and non-target trials whose two files come from one
    corpus (``ls-``, ``vctk-``, ...): a different-speaker pair across corpora differs in
    channel too, which even an untrained network tells apart."""
    trials, counts = [], {0: 0, 1: 0}
    for line in (root / "trials.txt").read_text().splitlines():
        label, a, b = line.split()
        if a.split("-")[0] != b.split("-")[0]:
            continue
        if counts[int(label)] < per_class:
            counts[int(label)] += 1
            trials.append((int(label), str(root / a), str(root / b)))
    return trials


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_separates_real_speakers(name, shared_data):
    model = _bundled(name).set_embedding(step_s=1.0)  # fewer windows than shipped: keeps the test short
    trials = _real_trials(shared_data / "real", per_class=8)
    cache = {}

    def embedding(path):
        if path not in cache:
            cache[path] = model.embed(path)
        return cache[path]

    scores = {0: [], 1: []}
    for label, a, b in trials:
        scores[label].append(SpeakerModel.cosine(embedding(a), embedding(b)))
    assert np.mean(scores[1]) > np.mean(scores[0]), scores
