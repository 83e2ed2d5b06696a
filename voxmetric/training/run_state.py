"""Keeping a run's state safe: which config changes a resume refuses, the previous
checkpoint kept beside the new one, and SIGINT / SIGTERM turned into a checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..fileio import atomic_open
from . import distributed


RESUME_FIXED_SECTIONS = ("model", "loss", "optimizer", "data", "seed")
"""Config sections a resumed run must share with its checkpoint (the rest may change)."""
RESUME_FREE_KEYS = {"data.num_workers"}
"""...except these: they do not change what is trained (the batch stream ignores workers)."""


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
