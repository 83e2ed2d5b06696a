"""Atomic file output: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from .errors import WriteError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Use it with writers that take a path (``np.savez``, ``torch.save``,
    ``safetensors``, ``matplotlib.savefig``). On an exception the temporary
    file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    check_writable(path, probe=False)  # creating the temporary file below is the probe
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    suffix = "".join(os.path.splitext(base)[1:])
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.tmp-", suffix=suffix)
        os.close(fd)
    except OSError as error:
        raise _cannot_write(path, error) from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file 0600: give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as error:  # the disk filled up, the folder went read-only, ...
        raise _cannot_write(path, error) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cannot_write(path: str, error: OSError) -> WriteError:
    return WriteError(path, error.strerror or str(error))


def check_writable(path: str | os.PathLike, probe: bool = True) -> None:
    """Raise :class:`WriteError` now if ``path`` could not be written later: it is a
    folder, or its nearest existing ancestor is a file or a folder this process cannot write
    into. Commands call it before long work, so a bad ``--out`` fails in a second, not after it.

    With ``probe``, a temporary file is also created and removed in that ancestor: permission
    bits do not tell root that /sys, /proc or a read-only mount refuse new files.
    """
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(os.sep):
        raise WriteError(path, "it is a directory; give a file name to write")
    _check_room(path, os.path.dirname(os.path.abspath(path)), probe)


def check_writable_folder(folder: str | os.PathLike, probe: bool = True) -> None:
    """:func:`check_writable` for an output folder (``train``, ``synth``, ``compare``): the
    error names the folder, e.g. "x.wav: cannot write (it is a file, not a folder)"."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise WriteError(folder, "it is a file, not a folder")
    _check_room(folder, os.path.abspath(folder), probe)


def _check_room(path: str, ancestor: str, probe: bool) -> None:
    """``path`` can be made in ``ancestor`` or its nearest existing ancestor (see :func:`check_writable`)."""
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise WriteError(path, f"{ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise WriteError(path, f"no permission to write in {ancestor}")
    if probe:
        try:
            fd, probe_path = tempfile.mkstemp(dir=ancestor, prefix=f".{os.path.basename(path)}.probe-")
        except OSError as error:
            raise WriteError(path, error.strerror or str(error)) from None
        os.close(fd)
        os.unlink(probe_path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open ``path`` for writing atomically (text by default, ``"wb"`` for bytes)."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


# --- JSON: the one encoder --------------------------------------------------------------


def to_jsonable(value):
    """``value`` with numpy scalars and arrays, tuples, paths, sets and non-string keys turned
    into plain JSON types; floats that are NaN or infinite become ``None``.

    Every JSON voxmetric writes (results files, ``--json`` output, JSON Lines) goes through
    here, so one object always serialises the same way. Anything else (an arbitrary object)
    is a ``TypeError`` naming its type, never a silent ``str()``.
    """
    import math

    import numpy as np

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(to_jsonable(k))): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def dumps_json(value, indent: int | None = None) -> str:
    """``value`` as JSON text (:func:`to_jsonable` first; strict JSON, no NaN)."""
    import json

    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, value, indent: int | None = 2) -> None:
    """Write ``value`` as JSON to ``path`` atomically (see :func:`dumps_json`)."""
    text = dumps_json(value, indent=indent)
    with atomic_open(path) as f:
        f.write(text + "\n")


# --- progress bars ----------------------------------------------------------------------


def progress_bar(iterable=None, enabled: bool = True, **options):
    """A tqdm progress bar on stderr that never redraws into a log file.

    ``enabled=False`` (``-q``) hides it; otherwise it shows only when stderr is a terminal
    (tqdm's ``disable=None``), so redirected output stays free of carriage-return lines.
    ``options`` go to tqdm (``desc``, ``unit``, ``total``, ``leave``).
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=None if enabled else True, **options)
