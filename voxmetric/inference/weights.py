"""The ``voxmetric-embedding-model/1`` weights file: read, write, checksums.

A safetensors file (no pickle anywhere). Tensors = the embedding network's ``state_dict`` (floating point ones stored in
float16 or float32, integer buffers as they are; loaded back as float32) and string
metadata, each value JSON:

======================  =================================================================
``format``              ``"voxmetric-embedding-model/1"`` (plain string)
``model``               ``{"name": registry name, "params": constructor arguments}``
``calibration``         ``{"scale", "offset"}``: ``llr = scale * cosine + offset``, or ``null``
``threshold``           cosine decision threshold (EER point on validation trials), or ``null``
``embedding``           front-end settings ``{"vad", "window_s", "step_s", "rms_dbfs"}``
``description``         one line for humans
``training``            free JSON: data, recipe, validation figures
======================  =================================================================

A folder of weights files may hold a ``manifest.json`` (``{"format":
"voxmetric-pretrained-manifest/1", "files": {name: {"sha256", "bytes"}}}``, written
by :func:`update_manifest`); :func:`check_manifest` compares a file with it. The
bundled models must be listed there (:mod:`voxmetric.pretrained`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..evaluate.calibration import Calibration
from ..fileio import atomic_open
from .frontend import FrontendSettings

FORMAT = "voxmetric-embedding-model/1"
MANIFEST_FORMAT = "voxmetric-pretrained-manifest/1"
MAX_HEADER_BYTES = 16 * 2 ** 20
"""A safetensors header (names, shapes, metadata) longer than this is refused unread."""


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_manifest(path: Path, required: bool) -> None:
    """Compare ``path``'s SHA-256 with the ``manifest.json`` beside it.

    Args:
        required: the file must be listed (bundled weights); otherwise a file without a
            manifest entry is accepted unchecked.

    Raises:
        CheckpointError: checksum mismatch, or (``required``) no manifest / no entry.
    """
    manifest_path = path.parent / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entry = manifest["files"].get(path.name)
        # Entries name files of this folder only: a key with a path in it (another folder,
        # '..', an absolute path) means the manifest was tampered with or is not ours.
        outside = [name for name in manifest["files"] if not _plain_file_name(name)]
        if outside:
            raise ValueError(f"entry {outside[0]!r} points outside its folder")
        if entry is not None and not isinstance(entry, dict):
            raise ValueError(f"entry {path.name!r} is not a mapping")
    except FileNotFoundError:
        entry = None
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        raise CheckpointError(f"{manifest_path}: unreadable or corrupt manifest ({error}); "
                              f"{'reinstall voxmetric' if required else 'delete or rewrite it'}") from None
    if entry is None:
        if required:
            raise CheckpointError(f"{path}: not listed in {manifest_path}; the installation is incomplete, "
                                  f"reinstall voxmetric")
        return
    actual = sha256(path)
    if actual != entry.get("sha256"):
        raise CheckpointError(
            f"{path}: checksum mismatch (SHA-256 {actual[:16]}..., manifest says {str(entry.get('sha256'))[:16]}...): "
            f"the file is corrupted or was modified; "
            + ("reinstall voxmetric" if required else "re-export it or run voxmetric.export.update_manifest")
        )


def _plain_file_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name and not os.path.isabs(name))


def _check_header_length(path: str) -> None:
    """The 8-byte little-endian header length of a safetensors file, checked against the file's size
    before anything is parsed or allocated."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path}: unreadable or corrupt weights file ({size} bytes, too short for a "
                              f"safetensors header)")
    length = int.from_bytes(head, "little")
    if length > size - 8:
        raise CheckpointError(f"{path}: unreadable or corrupt weights file (its header claims {length} bytes, "
                              f"the file has {size - 8} after the length field)")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: unreadable or corrupt weights file (header of {length} bytes, at most "
                              f"{MAX_HEADER_BYTES} expected)")


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict (float32) and decoded metadata of a ``voxmetric-embedding-model/1`` file.

    Raises:
        CheckpointError: missing file, corrupt safetensors header or data, another
            format, or metadata that is not the documented JSON.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such weights file")
    _check_header_length(path)
    try:
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError, OSError, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: unreadable or corrupt weights file ({reason})") from None
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a voxmetric weights file (format {raw.get('format')!r}, "
                              f"expected {FORMAT!r})")
    try:
        metadata = {key: json.loads(value) for key, value in raw.items() if key != "format"}
        model = metadata["model"]
        if not (isinstance(model, dict) and isinstance(model.get("name"), str)
                and isinstance(model.get("params"), dict)):
            raise ValueError(f"model must be {{'name', 'params'}}, got {model!r}")
        metadata["calibration"] = (None if metadata.get("calibration") is None
                                   else Calibration.from_dict(metadata["calibration"]))
        threshold = metadata.get("threshold")
        if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a number or null, got {threshold!r}")
        metadata["threshold"] = threshold  # absent: none, as null
        metadata["embedding"] = FrontendSettings.from_dict(metadata.get("embedding", {}))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: bad metadata ({error})") from None
    state = {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}
    return state, metadata


def write_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write tensors and metadata (values JSON-encoded, ``format`` added) atomically.

    The same inputs give the same bytes (see :func:`_safetensors_bytes`).
    """
    strings = {"format": FORMAT, **{key: json.dumps(value) for key, value in metadata.items()}}
    with atomic_open(path, "wb") as f:
        f.write(_safetensors_bytes(tensors, strings))


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes whose header has sorted keys: the same inputs give the same file.

    (The library writes the metadata map in hash order, so two exports of one checkpoint
    would differ byte-wise and in SHA-256.) Layout: 8-byte little-endian header length,
    JSON header padded with spaces to a multiple of 8, tensor data (offsets unchanged).
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


def update_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Write ``directory/manifest.json`` with the SHA-256 and size of every ``*.safetensors`` in it.

    :func:`voxmetric.pretrained.load_model` checks bundled files against it.
    """
    directory = Path(directory)
    files = {path.name: {"sha256": sha256(path), "bytes": path.stat().st_size}
             for path in sorted(directory.glob("*.safetensors"))}
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    with atomic_open(directory / "manifest.json") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return manifest


def load_weights_checked(network: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """``network.load_state_dict(weights)`` with an error naming the first mismatches.

    Raises:
        CheckpointError: missing, unexpected or differently shaped tensors, or NaN /
            infinite values (a corrupt or sabotaged file: nothing is loaded).
    """
    own = network.state_dict()
    problems = [f"missing {key}" for key in own if key not in weights]
    problems += [f"unexpected {key}" for key in weights if key not in own]
    problems += [f"{key}: {tuple(weights[key].shape)} in the file, {tuple(value.shape)} in the model"
                 for key, value in own.items() if key in weights and weights[key].shape != value.shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{source}: weights do not fit the {type(network).__name__} architecture: "
                              f"{'; '.join(problems[:3])}{more}")
    bad = [key for key, value in weights.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{source}: corrupt weights: tensor {bad[0]} holds NaN or infinite values{more}")
    network.load_state_dict(weights)
