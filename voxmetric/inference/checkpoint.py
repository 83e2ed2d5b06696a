"""Checkpoints: written atomically, read without executing anything.

A checkpoint is a ``torch.save`` dictionary of tensors and plain Python values
only, loaded with ``weights_only=True``: a file carrying a pickled object
(possibly malicious) is refused with a :class:`CheckpointError`, never run.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from ..errors import CheckpointError
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
    except (OSError, RuntimeError) as error:  # torch reports write failures as RuntimeError
        reason = getattr(error, "strerror", None) or (str(error).splitlines() or [type(error).__name__])[0]
        kept = " (the previous checkpoint there is intact)" if os.path.exists(path) else ""
        raise CheckpointError(f"{os.fspath(path)}: cannot write checkpoint ({reason}){kept}") from None


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
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(
            f"{path}: refused to load: it contains Python objects other than tensors and "
            f"plain values, which could execute code ({reason})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: unreadable or corrupt checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a voxmetric checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state['version']} is newer than this voxmetric "
            f"understands ({VERSION}); upgrade voxmetric"
        )
    return state
