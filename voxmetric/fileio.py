"""Atomic file output: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from .errors import VoxmetricError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Use it with writers that take a path (``np.savez``, ``torch.save``,
    ``safetensors``, ``matplotlib.savefig``). On an exception the temporary
    file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(os.sep):
        raise VoxmetricError(f"{path}: is a directory; give a file name to write")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    suffix = "".join(os.path.splitext(base)[1:])
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file 0600: give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open ``path`` for writing atomically (text by default, ``"wb"`` for bytes)."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
