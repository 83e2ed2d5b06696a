"""Export: TorchScript and ONNX networks match PyTorch at any length; the command; errors."""

import warnings

import pytest
import torch

from voxmetric.cli import main
from voxmetric.errors import CheckpointError
from voxmetric.inference.export import FORMATS, TOLERANCE, ExportError, export_network, export_pretrained
from voxmetric.inference.speaker_model import load_model

from .test_speaker_model import make_checkpoint, make_weights

TINY_ECAPA = {"name": "ecapa", "params": {"channels": 32, "embedding_dim": 16}}
LENGTHS = [12_345, 27_000, 65_432]  # samples: none a multiple of a frame hop


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return {"sinctdnn": make_weights(folder), "ecapa": make_weights(folder, name="ecapa", model=TINY_ECAPA)}


def _runner(format, path):
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
            program = torch.jit.load(str(path))
        return lambda batch: program(batch).detach()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: torch.from_numpy(session.run(None, {"waveforms": batch.numpy()})[0])


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("model", ["sinctdnn", "ecapa"])
def test_exported_network_matches_pytorch_at_several_lengths(weights, tmp_path, format, model):
    out = tmp_path / f"net.{format}"
    report = export_network(weights[model], format, out)
    assert report["verified"] and max(report["max_abs_diff"].values()) <= TOLERANCE
    network = load_model(weights[model]).network
    run = _runner(format, out)
    generator = torch.Generator().manual_seed(5)
    for batch_size, length in zip([1, 3, 2], LENGTHS):
        batch = 0.1 * torch.randn(batch_size, length, generator=generator)
        with torch.inference_mode():
            expected = network(batch)
        torch.testing.assert_close(run(batch), expected, rtol=0, atol=TOLERANCE)


def test_export_from_a_training_checkpoint(tmp_path):
    report = export_network(make_checkpoint(tmp_path / "c.pt"), "torchscript", tmp_path / "net.pt")
    assert report["exporter"] == "torch.jit.trace" and (tmp_path / "net.pt").exists()


def test_unsupported_format_lists_the_formats(weights, tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'tflite'; allowed: onnx, torchscript"):
        export_network(weights["sinctdnn"], "tflite", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_export(weights, tmp_path, capsys):
    out = tmp_path / "net.pt"
    assert main(["export", str(weights["sinctdnn"]), "--format", "torchscript", str(out)]) == 0
    assert "matches PyTorch" in capsys.readouterr().out and out.exists()
    with pytest.raises(SystemExit) as caught:
        main(["export", str(weights["sinctdnn"]), "--format", "tflite", str(out)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tflite'" in err and "onnx" in err and "torchscript" in err
    assert main(["export", "no-such-model", "--format", "onnx", str(tmp_path / "y.onnx")]) == 1
    assert "voxmetric: error: 'no-such-model' is neither a bundled model" in capsys.readouterr().err


def test_export_pretrained_checks_its_inputs(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "c.pt")
    common = {"calibration": None, "threshold": None, "embedding_settings": {}, "description": "x"}
    with pytest.raises(ValueError, match="end in .safetensors"):
        export_pretrained(checkpoint, tmp_path / "w.bin", **common)
    with pytest.raises(ValueError, match="rms_dbfs must be a negative number"):
        export_pretrained(checkpoint, tmp_path / "w.safetensors", **{**common, "embedding_settings": {"rms_dbfs": 3}})
    with pytest.raises(CheckpointError, match="neither a bundled model .* nor an existing file"):
        export_pretrained(tmp_path / "missing.pt", tmp_path / "w.safetensors", **common)
    report = export_pretrained(checkpoint, tmp_path / "w32.safetensors", dtype="float32", **common)
    assert report["min_cosine_vs_float32"] == pytest.approx(1.0, abs=1e-6)
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize("command", ["verify", "export"])
def test_new_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "usage: voxmetric " + command in capsys.readouterr().out


def _runtime_recipe(onnx_path, audio_path, vad: bool):
    """README "Deploying an exported model": soundfile + scipy + onnxruntime, settings from the file."""
    import numpy as np
    import soundfile
    from scipy.signal import sosfilt, sosfilt_zi

    from voxmetric.audio.vad import VadConfig, speech_segments, trim_silence
    from voxmetric.inference.export import read_metadata

    import onnxruntime

    meta = read_metadata(onnx_path)
    samples, rate = soundfile.read(audio_path, dtype="float32", always_2d=True)
    waveform = samples.mean(axis=1)
    assert rate == meta["sample_rate_hz"]  # (else resample to 16 kHz first)
    sos = np.asarray(meta["highpass"]["sos"])
    waveform = sosfilt(sos, waveform.astype(np.float64), zi=sosfilt_zi(sos) * waveform[0])[0].astype(np.float32)
    if vad:
        settings = {key: value for key, value in meta["vad"].items() if key not in ("margin_s", "enabled", "how")}
        segments = speech_segments(waveform, rate, VadConfig.from_dict(settings))
        waveform = trim_silence(waveform, rate, meta["vad"]["margin_s"], segments)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    window_s, step_s = meta["frontend"]["window_s"], meta["frontend"]["step_s"]
    if window_s is None:  # the level step is in the graph
        return session.run(None, {"waveforms": waveform[None]})[0][0]
    # Sliding windows: the level step is outside (whole recording scaled once), then the mean of
    # the windows' embeddings; windows every step, the last one aligned to the end.
    rms = np.sqrt(np.mean(waveform.astype(np.float64) ** 2))
    waveform = (waveform * (10 ** (meta["frontend"]["rms_dbfs"] / 20) / rms)).astype(np.float32)
    size, hop = int(round(window_s * rate)), int(round(step_s * rate))
    starts = list(range(0, max(1, waveform.size - size + 1), hop))
    if waveform.size > size and starts[-1] != waveform.size - size:
        starts.append(waveform.size - size)
    rows = [session.run(None, {"waveforms": waveform[None, s:s + size]})[0][0] for s in starts]
    return np.mean(rows, axis=0)


def _end_to_end(name, shared_data, tmp_path):
    from voxmetric.inference.export import read_metadata
    from voxmetric.inference.speaker_model import SpeakerModel

    out = tmp_path / f"{name}.onnx"
    report = export_network(name, "onnx", out)
    model = load_model(name)
    assert report["verified"] and report["level_in_graph"] == (model.settings.window_s is None)
    meta = read_metadata(out)
    assert meta["frontend"] == model.settings.to_dict() and meta["threshold"] == model.threshold
    assert meta["calibration"] == model.calibration.to_dict() and meta["model_fingerprint"] == model.fingerprint
    assert meta["sample_rate_hz"] == 16000 and meta["vad"]["enabled"] and meta["highpass"]["cutoff_hz"] == 70.0
    path = shared_data / "real" / "arctic-aew" / "arctic_a0001.flac"
    with_vad = SpeakerModel.cosine(_runtime_recipe(out, path, vad=True), model.embed(path))
    without_vad = SpeakerModel.cosine(_runtime_recipe(out, path, vad=False), model.set_frontend(vad=False).embed(path))
    assert with_vad > 0.999 and without_vad > 0.999, (with_vad, without_vad)


def test_onnx_runtime_recipe_matches_embed_sinctdnn(shared_data, tmp_path):
    _end_to_end("sinctdnn-aam", shared_data, tmp_path)


@pytest.mark.slow
def test_onnx_runtime_recipe_matches_embed_ecapa(shared_data, tmp_path):
    _end_to_end("ecapa-aam", shared_data, tmp_path)


def test_torchscript_export_carries_the_metadata_and_the_level_step(weights, tmp_path):
    from voxmetric.inference.export import read_metadata

    model = load_model(weights["sinctdnn"])
    out = tmp_path / "net.pt"
    report = export_network(weights["sinctdnn"], "torchscript", out)
    meta = read_metadata(out)
    assert meta["frontend"] == model.settings.to_dict() and meta["level_in_graph"] == report["level_in_graph"]
    assert meta["model_fingerprint"] == model.fingerprint


def _calibration_file(path, model: str | None):
    from voxmetric.evaluate.calibration import Calibration
    from voxmetric.evaluate.operating_point import CalibrationResult

    CalibrationResult(calibration=Calibration(7.0, -2.0), threshold=0.3, threshold_ci=(0.2, 0.4), eer=0.1,
                      eer_ci=(0.05, 0.2), far=0.1, frr=0.1, target_far=None, n_target=10, n_nontarget=10,
                      model=model).save(path)
    return path


def test_export_refuses_a_calibration_made_for_another_model(weights, tmp_path, capsys):
    other = _calibration_file(tmp_path / "other.json", load_model(weights["ecapa"]).fingerprint)
    out = tmp_path / "w.safetensors"
    assert main(["export", str(weights["sinctdnn"]), "--format", "safetensors", str(out),
                 "--calibration", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("voxmetric: error: ") and err.count("\n") == 1
    assert "other.json: calibration made for model 'ecapa:sha256:" in err and "not 'tiny:sha256:" in err
    assert not out.exists()
    # this model's own calibration is carried into the weights file
    own = _calibration_file(tmp_path / "own.json", load_model(weights["sinctdnn"]).fingerprint)
    assert main(["export", str(weights["sinctdnn"]), "--format", "safetensors", str(out),
                 "--calibration", str(own), "-q"]) == 0
    exported = load_model(out)
    assert exported.threshold == pytest.approx(0.3) and exported.calibration.scale == pytest.approx(7.0)


@pytest.mark.parametrize("format, name, expected", [("onnx", "m.safetensors", "*.onnx"), ("onnx", "m.pt", "*.onnx"),
                                                    ("torchscript", "m.onnx", "*.pt"),
                                                    ("torchscript", "m.safetensors", "*.pt")])
def test_export_refuses_a_name_of_another_format(weights, tmp_path, capsys, format, name, expected):
    out = tmp_path / name
    out.write_bytes(b"an earlier file")
    assert main(["export", str(weights["sinctdnn"]), "--format", format, str(out)]) == 2
    err = capsys.readouterr().err
    assert "usage: voxmetric export" in err and f"{name}: a {out.suffix} name is for" in err and expected in err
    assert out.read_bytes() == b"an earlier file"


def test_export_to_an_unwritable_path_fails_before_exporting(weights, tmp_path, capsys, monkeypatch):
    from voxmetric.inference import export

    def never(*args, **kwargs):
        raise AssertionError("exported before checking the output path")

    monkeypatch.setattr(export, "export_network", never)
    monkeypatch.setattr(export, "export_pretrained", never)
    (tmp_path / "file").write_text("x")
    for format, out in [("onnx", tmp_path / "file" / "m.onnx"), ("safetensors", tmp_path / "file" / "m.safetensors"),
                        ("torchscript", tmp_path)]:
        assert main(["export", str(weights["sinctdnn"]), "--format", format, str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"voxmetric: error: {out}: cannot write (") and err.count("\n") == 1


def test_read_metadata_of_a_file_that_is_no_export_is_one_line(tmp_path):
    from voxmetric.errors import ExportError
    from voxmetric.inference.export import read_metadata

    junk = tmp_path / "x.pt"
    junk.write_bytes(b"RIFF....WAVEfmt ")
    for path, message in ((tmp_path / "missing.onnx", "no such file"), (tmp_path, "is a folder"),
                          (junk, "not a voxmetric TorchScript export")):
        with pytest.raises(ExportError, match=message):
            read_metadata(path)
