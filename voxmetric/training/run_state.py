"""Keeping a run's state safe: a new run never mixes with an old one, which config changes a
resume refuses, the checkpoint to resume from (or why not), the previous checkpoint kept
beside the new one, and SIGINT / SIGTERM turned into a checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_open
from ..inference.checkpoint import load_checkpoint
from . import distributed
from .config import Config


RESUME_FIXED_SECTIONS = ("model", "loss", "optimizer", "data", "seed", "distill")
"""Config sections a resumed run must share with its checkpoint (the rest may change)."""
RESUME_FREE_KEYS = {"data.num_workers"}
"""...except these: they do not change what is trained (the batch stream ignores workers)."""
RESUME_FIXED_KEYS = ("training.freeze_network_batches", "training.imprint_head_chunks")
"""Keys of the other sections that a resumed run must share too (they shape the optimiser)."""


def _changed_keys(saved: dict[str, Any], current: dict[str, Any], sections, prefix: str = "",
                  free: frozenset[str] | set[str] = RESUME_FREE_KEYS) -> list[str]:
    """Dotted names of the values that differ between two config dictionaries, in ``sections``
    (the dotted names in ``free`` may differ)."""
    changed = []
    for key in sections:
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict) and key != "params":
            changed += _changed_keys(a, b, sorted(set(a) | set(b)), f"{name}.", free)
        elif name in free:
            continue
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            changed.append(name)
    return changed


def _with_defaults(saved: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with the keys it lacks (a checkpoint older than them) set to their defaults."""
    merged = dict(saved)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict) and key != "params":
            merged[key] = _with_defaults(merged[key], value)
    return merged


def resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted names of what ``--resume`` must not change but did: the values of
    :data:`RESUME_FIXED_SECTIONS` and :data:`RESUME_FIXED_KEYS` that differ between the
    checkpoint's config and the current one (a key newer than the checkpoint counts as its
    default there, so that runs saved before it was added resume)."""
    saved = _with_defaults(saved, Config().to_dict())
    changed = _changed_keys(saved, current, RESUME_FIXED_SECTIONS)
    for dotted in RESUME_FIXED_KEYS:
        section, key = dotted.split(".")
        if saved.get(section, {}).get(key) != current.get(section, {}).get(key):
            changed.append(dotted)
    return changed


def check_fresh(out: Path, overwrite: bool) -> None:
    """A new run never mixes with an earlier one's checkpoints and logs in ``out``: they are an
    error, or removed with ``overwrite``."""
    checkpoints = out / "checkpoints"
    earlier = [p for p in (checkpoints / "last.pt", checkpoints / "best.pt", out / "metrics.jsonl",
                           checkpoints / "last.prev.pt") if p.exists()]
    if not earlier:
        return
    if not overwrite:
        raise ConfigError(f"{out} already holds a training run ({earlier[0].name}): continue it with "
                          f"--resume, replace it with --overwrite, or choose another --out")
    if distributed.is_main():
        for path in earlier:
            path.unlink()


def resume_state(checkpoints: Path) -> dict[str, Any]:
    """The training state in ``checkpoints/last.pt`` to resume from.

    Raises:
        ConfigError: there is no ``last.pt``.
        CheckpointError: ``last.pt`` is unreadable or not a training checkpoint; the message
            says whether ``last.prev.pt`` is intact and how to use it.
    """
    last, previous = checkpoints / "last.pt", checkpoints / "last.prev.pt"
    if not last.exists():
        raise ConfigError(f"--resume: no checkpoint to resume from at {last}")
    try:
        state = load_checkpoint(last)
        for key in ("model", "optimizer", "batches_done", "epochs_done", "config", "speakers"):
            if key not in state:
                raise CheckpointError(f"{last}: not a training checkpoint (no '{key}')")
        return state
    except CheckpointError as error:
        hint = "no earlier checkpoint is kept: start again with --overwrite"
        if previous.exists():
            try:
                kept = load_checkpoint(previous)
                hint = (f"the previous checkpoint {previous} (epoch {kept['epochs_done']}, batch "
                        f"{kept['batches_done']}) is intact: copy it over {last} and run --resume again")
            except (CheckpointError, KeyError):
                hint = f"the previous checkpoint {previous} is unreadable too: start again with --overwrite"
        raise CheckpointError(f"--resume: {error}; {hint}") from None


class _StopRequest:
    """SIGINT/SIGTERM ask for a checkpoint at the end of the current batch, then exit."""

    def __init__(self):
        self.requested = False
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        if distributed.is_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _keep_previous(last: Path, previous: Path) -> None:
    """Make ``previous`` the current ``last`` (a hard link, or a copy), atomically."""
    tmp = previous.with_name(f".{previous.name}.tmp-{os.getpid()}")
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(last, tmp)
        except OSError:  # no hard links here (some network file systems)
            shutil.copy2(last, tmp)
        os.replace(tmp, previous)
    except OSError as error:
        if tmp.exists():
            tmp.unlink()
        raise CheckpointError(f"{previous}: cannot keep the previous checkpoint ({error.strerror or error}); "
                              f"{last} is intact") from None


def cut_log(path: Path, epochs_done: int, batches_done: int) -> None:
    """On resume: cut ``metrics.jsonl`` back to the checkpoint (records of batches and
    epochs after it are written again as they are replayed; a torn last line goes)."""
    if not path.exists():
        return
    kept = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("batch", 0) > batches_done or record.get("epoch", 0) > epochs_done:
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    with atomic_open(path) as f:
        f.writelines(kept)
