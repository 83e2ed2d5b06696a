"""Checkpoints: written atomically, read without executing anything.

A checkpoint is a ``torch.save`` dictionary of tensors and plain Python values
only, loaded with ``weights_only=True``: a file carrying a pickled object
(possibly malicious) is refused with a :class:`CheckpointError`, never run.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from typing import Any

import torch

from ..errors import CheckpointError, WriteError
from ..fileio import atomic_path

FORMAT = "voxmetric-checkpoint"
VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    A process killed at any moment leaves either the previous file or the new
    one under ``path``, never a partial one.

    Raises:
        CheckpointError: the file cannot be written (disk full, permissions, ...): the
            message names ``path``; the previous file under ``path`` is left intact.
    """
    state = {"format": FORMAT, "version": VERSION, **state}
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (WriteError, OSError, RuntimeError) as error:  # torch reports write failures as RuntimeError
        reason = (getattr(error, "reason", None) or getattr(error, "strerror", None)
                  or (str(error).splitlines() or [type(error).__name__])[0])
        kept = " (the previous checkpoint there is intact)" if os.path.exists(path) else ""
        raise CheckpointError(f"{os.fspath(path)}: cannot write checkpoint ({reason}){kept}") from None


def _not_a_checkpoint(path: str) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` checkpoint, from its first bytes, or None.

    ``torch.save`` writes a zip archive (or, before PyTorch 1.6, a pickle stream starting
    with byte 0x80). A TorchScript archive is a zip too, but made to be run, not read.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unreadable or corrupt checkpoint (damaged zip archive)"
        if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
            return ("a TorchScript program (`voxmetric export --format torchscript`), not a checkpoint or weights "
                    "file: give the model's .safetensors file or a training checkpoint")
        return None
    if head[:1] == b"\x80":
        return None
    return "not a voxmetric checkpoint or weights file (not a PyTorch file)"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``).

    Raises:
        CheckpointError: missing, truncated or corrupt file, a file that is not a
            voxmetric checkpoint, or one holding objects other than tensors and
            plain containers (refused, not executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    refusal = _not_a_checkpoint(path)
    if refusal:
        raise CheckpointError(f"{path}: {refusal}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise CheckpointError(
                f"{path}: refused to load: it contains a Python object ({found.group(1)}) other than tensors "
                "and plain values, which could execute code"
            ) from None
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint") from None
    except Exception as error:  # the weights-only unpickler fails on junk in many ways
        reason = (str(error).splitlines() or [""])[0]
        if not reason or "weights_only" in reason or len(reason) > 200:
            reason = type(error).__name__
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a voxmetric checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state['version']} is newer than this voxmetric "
            f"understands ({VERSION}); upgrade voxmetric"
        )
    return state
