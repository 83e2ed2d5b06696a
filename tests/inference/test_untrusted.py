"""Untrusted model and data files: each a clear error naming the file, nothing executed or overwritten."""

import hashlib
import json
import math
import shutil
import struct
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from voxmetric.cli import main
from voxmetric.errors import CalibrationError
from voxmetric.evaluate.operating_point import CalibrationResult
from voxmetric.errors import CheckpointError, VoxmetricError
from voxmetric.evaluate.calibration import Calibration
from voxmetric.data.trials import key_paths
from voxmetric.inference import weights as weights_module
from voxmetric.inference.export import update_manifest
from voxmetric.inference.speaker_model import load_model

from .test_speaker_model import _voice, fake_bundled, tiny_weights  # noqa: F401  (fixtures)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite(source: Path, target: Path, tensors=None, metadata=None) -> Path:
    """A copy of a weights file with tensors and / or raw metadata changed."""
    with safe_open(str(source), framework="pt") as f:
        raw = dict(f.metadata())
        data = {key: f.get_tensor(key) for key in f.keys()}
    data = tensors(data) if tensors else data
    raw = metadata(raw) if metadata else raw
    target.write_bytes(weights_module._safetensors_bytes(data, raw))
    return target


def test_a_header_claiming_an_enormous_length_is_refused_unread(tmp_path, tiny_weights):  # noqa: F811
    for length in (2 ** 62, tiny_weights.stat().st_size):
        path = tmp_path / "huge.safetensors"
        path.write_bytes(struct.pack("<Q", length) + tiny_weights.read_bytes()[8:])
        with pytest.raises(CheckpointError, match=rf"{path}: unreadable or corrupt weights file \(its header claims {length} bytes"):
            load_model(path)
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="too short"):
        load_model(tmp_path / "short.safetensors")


def test_right_keys_wrong_shapes(tmp_path, tiny_weights):  # noqa: F811
    def shrink(tensors):
        key = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim >= 1 and v.shape[-1] > 1)
        tensors[key] = tensors[key][..., :1].contiguous()
        return tensors

    path = _rewrite(tiny_weights, tmp_path / "shapes.safetensors", tensors=shrink)
    with pytest.raises(CheckpointError, match=rf"{path}: weights do not fit .* in the file, .* in the model"):
        load_model(path)


def test_nan_weights_are_refused(tmp_path, tiny_weights):  # noqa: F811
    def poison(tensors):
        key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float("nan")
        return tensors

    path = _rewrite(tiny_weights, tmp_path / "nan.safetensors", tensors=poison)
    with pytest.raises(CheckpointError, match=rf"{path}: corrupt weights: tensor .* NaN or infinite"):
        load_model(path)


@pytest.mark.parametrize("scale", [-1.0, 0.0, "NaN"])
def test_weights_with_a_bad_calibration_are_refused(tmp_path, tiny_weights, scale):  # noqa: F811
    path = _rewrite(tiny_weights, tmp_path / "cal.safetensors",
                    metadata=lambda raw: {**raw, "calibration": json.dumps({"scale": float(scale), "offset": 0.0})})
    with pytest.raises(CheckpointError, match=rf"{path}: bad metadata \(calibration scale"):
        load_model(path)


@pytest.mark.parametrize("name", ["../evil.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_a_manifest_pointing_outside_its_folder_is_refused(fake_bundled, name):  # noqa: F811
    manifest = json.loads((fake_bundled / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    (fake_bundled / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest.json: unreadable or corrupt manifest \(entry .* points outside"):
        load_model("sinctdnn-aam")


def _calibration_file(path: Path, **changes) -> Path:
    result = CalibrationResult(calibration=Calibration(10.0, -5.0), threshold=0.5, threshold_ci=(0.4, 0.6), eer=0.1,
                               eer_ci=(0.05, 0.15), far=0.1, frr=0.1, target_far=None, n_target=10, n_nontarget=10)
    result.save(path)
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if key in ("scale", "offset"):
            data["calibration"][key] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))  # json writes NaN for float('nan'), as a careless tool would
    return path


@pytest.mark.parametrize("change", [{"scale": math.nan}, {"scale": -2.0}, {"offset": math.inf},
                                    {"threshold": math.nan}, {"model": 7}])
def test_a_bad_calibration_json_is_refused(tmp_path, tiny_weights, change, capsys):  # noqa: F811
    path = _calibration_file(tmp_path / "cal.json", **change)
    before = _digest(path)
    with pytest.raises(CalibrationError, match=rf"{path}: bad field value"):
        CalibrationResult.load(path)
    with pytest.raises(VoxmetricError, match=str(path)):
        load_model(tiny_weights, calibration=path)
    audio_path = tmp_path / "a.wav"
    from voxmetric import audio

    audio.write(audio_path, _voice())
    assert main(["verify", str(tiny_weights), str(audio_path), str(audio_path), "--calibration", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"voxmetric: error: {path}: bad field value") and "\n" not in err
    assert _digest(path) == before  # nothing rewritten


def test_trial_paths_escaping_the_root_are_read_with_one_warning(tmp_path):
    root = tmp_path / "trials_root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    for path in (root / "a.wav", tmp_path / "elsewhere" / "b.wav", tmp_path / "abs.wav", root / "c.wav",
                 tmp_path / "x.wav", tmp_path.parent / "y.wav"):
        path.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # symlinks and absolute paths: silently followed
        paths = key_paths(["a.wav", "linked/b.wav", str(tmp_path / "abs.wav"), "sub/../c.wav"], root)
    assert paths[1] == root / "linked" / "b.wav" and paths[2] == tmp_path / "abs.wav"
    with pytest.warns(UserWarning, match=r"2 trial path\(s\) lead outside this folder .*first: \.\./x\.wav"):
        paths = key_paths(["../x.wav", "a.wav", "../../y.wav"], root)
    assert paths[0] == root / "../x.wav"  # still read: the user asked for it


def test_a_checkpoint_used_as_init_from_with_nan_weights_is_refused(tmp_path):
    from voxmetric.inference.checkpoint import save_checkpoint
    from voxmetric.inference.speaker_model import load_network_weights
    from voxmetric.models import build_model

    from ..training.test_trainer import TINY_MODEL

    network = build_model(TINY_MODEL["name"], **TINY_MODEL["params"])
    state = {k: v.clone() for k, v in network.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].fill_(float("inf"))
    path = tmp_path / "bad.pt"
    save_checkpoint({"config": {"model": TINY_MODEL}, "model": state}, path)
    with pytest.raises(CheckpointError, match=rf"{first} holds NaN or infinite"):
        load_network_weights(build_model(TINY_MODEL["name"], **TINY_MODEL["params"]), path)
    shutil.copy(path, tmp_path / "copy.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(tmp_path / "copy.pt")
    assert torch.load(path, weights_only=True)["model"][first].isinf().all()  # untouched
    _ = update_manifest  # (the manifest writer is exercised in test_speaker_model)
