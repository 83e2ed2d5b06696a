"""Prepared inputs kept between embeddings of the same files: validation and comparisons.

Validation after every epoch embeds the same validation files again and again, and a loss
comparison tests every run on the same trial files; only the network changes. Reading a
file, its quality pass, the VAD and the level step (:meth:`Frontend.prepare
<voxmetric.inference.frontend.Frontend.prepare>`) do not depend on the network, so a
:class:`PreparedCache` does them once per file and hands out copies of the result.

A cached entry is keyed by the file's resolved path, size and modification time and by the
front-end settings that shape the prepared waveform (``vad``, ``rms_dbfs``): a file changed
on disk is read again, and two front-ends that trim or scale differently never share an
entry. The cache is bounded by bytes (least recently used entries leave first) and does not
keep a file larger than a quarter of its budget. Arrays are never cached (no stable key).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 512 * 2**20
"""Budget of the process-wide cache (:func:`shared_prepared_cache`): about 2.3 hours of
prepared 16 kHz float32 speech."""


class PreparedCache:
    """A bounded map from (file, settings) to a prepared ``(waveform, report)`` (module doc).

    Args:
        max_bytes: total size of the cached waveforms at most.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple, tuple[np.ndarray, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (f"PreparedCache({len(self)} files, {self.bytes / 2**20:.1f} of {self.max_bytes / 2**20:.0f} MB, "
                f"{self.hits} hits, {self.misses} misses)")

    @staticmethod
    def key(path: str | os.PathLike, settings: tuple) -> tuple | None:
        """The entry key of ``path`` under ``settings``; None when the file cannot be stat'ed
        (the caller then prepares it uncached, and its own error names the file)."""
        try:
            resolved = os.path.realpath(path)
            stat = os.stat(resolved)
        except OSError:
            return None
        return resolved, stat.st_size, stat.st_mtime_ns, settings

    def get(self, path: str | os.PathLike, settings: tuple,
            prepare: Callable[[], tuple[np.ndarray, Any]]) -> tuple[np.ndarray, Any]:
        """``prepare()``'s ``(waveform, report)`` for ``path``, computed once per key; the
        waveform returned is always the caller's own copy. Errors of ``prepare`` propagate
        and nothing is cached for them."""
        key = self.key(path, settings)
        if key is not None:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry[0].copy(), entry[1]
        waveform, report = prepare()
        with self._lock:
            self.misses += 1
            if key is not None and waveform.nbytes <= self.max_bytes // 4 and key not in self._entries:
                self._entries[key] = (waveform.copy(), report)
                self.bytes += waveform.nbytes
                while self.bytes > self.max_bytes:
                    _, (old, _) = self._entries.popitem(last=False)
                    self.bytes -= old.nbytes
        return waveform, report


_SHARED: PreparedCache | None = None


def shared_prepared_cache() -> PreparedCache:
    """The process-wide cache of validation and comparison front-ends (``DEFAULT_MAX_BYTES``)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = PreparedCache()
    return _SHARED
