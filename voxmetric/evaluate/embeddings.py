"""Embedding files: ids plus an ``(N, D)`` float32 matrix, as ``.npz`` or ``.safetensors``.

* ``.npz``: ``np.savez`` with two arrays, ``ids`` (unicode strings) and ``embeddings``;
  loaded with ``allow_pickle=False``, so a file never executes code.
* ``.safetensors``: one tensor ``embeddings``; the ids are a JSON list in the header
  metadata under ``"ids"``.

The format follows the file name ending. Writes are atomic. Every problem with a file
is an :class:`EmbeddingsError` whose message starts with the path.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import EmbeddingsError, TrialsError, VoxmetricError
from ..fileio import atomic_open, atomic_path

FORMATS = (".npz", ".safetensors")
"""File name endings :func:`save_embeddings` and :func:`load_embeddings` understand."""


def _format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise EmbeddingsError(
            f"{path}: unknown embeddings format '{suffix}'; use one of {', '.join(FORMATS)}"
        )
    return suffix


def _validate(path: str, ids: Sequence[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Check ``ids`` against ``matrix`` ``(N, D)``; return them as ``(list, float32)``."""
    ids = [str(i) for i in ids]
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise EmbeddingsError(f"{path}: embeddings must be an (N, D) matrix, got shape {matrix.shape}")
    if len(ids) != matrix.shape[0]:
        raise EmbeddingsError(
            f"{path}: {len(ids)} ids for {matrix.shape[0]} embedding rows; they must match"
        )
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise EmbeddingsError(f"{path}: id '{duplicate}' appears twice")
    if not np.issubdtype(matrix.dtype, np.number) or np.iscomplexobj(matrix):
        raise EmbeddingsError(f"{path}: embeddings must be real numbers, got dtype {matrix.dtype}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise EmbeddingsError(f"{path}: embedding of '{ids[row]}' (row {row}) holds NaN or infinite values")
    return ids, matrix


def save_embeddings(path: str | os.PathLike, ids: Sequence[str], matrix: np.ndarray) -> None:
    """Write ids and their ``(N, D)`` embeddings atomically; format by file name ending.

    Args:
        path: ``*.npz`` or ``*.safetensors``.
        ids: ``N`` unique strings (utterance ids or paths), row order of ``matrix``.
        matrix: ``(N, D)`` real array, stored as float32.

    Raises:
        EmbeddingsError: unknown ending, ``len(ids) != N``, duplicate ids, non-finite values.
    """
    path = os.fspath(path)
    suffix = _format(path)
    ids, matrix = _validate(path, ids, matrix)
    if suffix == ".npz":
        with atomic_open(path, "wb") as f:
            np.savez(f, ids=np.array(ids, dtype=np.str_), embeddings=matrix)
    else:
        from safetensors.numpy import save_file

        with atomic_path(path) as tmp:
            save_file({"embeddings": matrix}, tmp, metadata={"ids": json.dumps(ids)})


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a file written by :func:`save_embeddings`.

    Returns:
        ``(ids, matrix)``: ``N`` ids and the ``(N, D)`` float32 matrix.

    Raises:
        EmbeddingsError: missing, empty or corrupt file, unknown ending, missing
            fields, ids not matching the rows.
    """
    path = os.fspath(path)
    suffix = _format(path)
    if not os.path.isfile(path):
        raise EmbeddingsError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise EmbeddingsError(f"{path}: empty file (0 bytes)")
    ids, matrix = _load_npz(path) if suffix == ".npz" else _load_safetensors(path)
    return _validate(path, ids, matrix)


def _load_npz(path: str) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("ids", "embeddings") if key not in data.files]
            if missing:
                raise EmbeddingsError(
                    f"{path}: not a voxmetric embeddings file (missing array "
                    f"{', '.join(repr(m) for m in missing)}; found {data.files})"
                )
            ids, matrix = data["ids"], data["embeddings"]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise EmbeddingsError(f"{path}: corrupt or unreadable .npz file ({error})") from None
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise EmbeddingsError(f"{path}: 'ids' must be a 1-d array of strings, got {ids.dtype} {ids.shape}")
    return ids.tolist(), matrix


def _load_safetensors(path: str) -> tuple[list[str], np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            if "embeddings" not in f.keys():
                raise EmbeddingsError(f"{path}: not a voxmetric embeddings file (no tensor 'embeddings')")
            matrix = f.get_tensor("embeddings")
    except (SafetensorError, OSError, ValueError) as error:
        raise EmbeddingsError(f"{path}: corrupt or unreadable .safetensors file ({error})") from None
    if "ids" not in metadata:
        raise EmbeddingsError(f"{path}: no 'ids' in the safetensors metadata")
    try:
        ids = json.loads(metadata["ids"])
    except json.JSONDecodeError as error:
        raise EmbeddingsError(f"{path}: 'ids' metadata is not valid JSON ({error})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise EmbeddingsError(f"{path}: 'ids' metadata must be a JSON list of strings")
    return ids, matrix


class EmbeddingTable:
    """Embeddings with a lookup from id to row.

    Args:
        ids: ``N`` unique ids.
        matrix: ``(N, D)`` embeddings, stored as float32.
        source: where they came from (a file name), quoted in error messages.
    """

    def __init__(self, ids: Sequence[str], matrix: np.ndarray, source: str = "embeddings"):
        self.source = source
        self.ids, self.matrix = _validate(source, ids, matrix)
        self.row_of = {uid: row for row, uid in enumerate(self.ids)}

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingTable:
        """Read a table from a file written by :func:`save_embeddings`."""
        ids, matrix = load_embeddings(path)
        return cls(ids, matrix, source=os.fspath(path))

    def save(self, path: str | os.PathLike) -> None:
        save_embeddings(path, self.ids, self.matrix)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, uid: str) -> bool:
        return uid in self.row_of

    def __getitem__(self, uid: str) -> np.ndarray:
        """``(D,)`` embedding of ``uid``."""
        return self.matrix[self.rows([uid])[0]]

    def __repr__(self) -> str:
        return f"EmbeddingTable({len(self)} x {self.dim}, source={self.source!r})"

    def rows(self, uids: Iterable[str], describe: Callable[[int], str] | None = None) -> np.ndarray:
        """``(len(uids),)`` int64 rows of ``uids``.

        Args:
            uids: ids to look up.
            describe: optional ``position -> origin`` (``lambda k: f"trials.txt, trial {k + 1}"``),
                called only for the first missing id and quoted in the error.

        Raises:
            TrialsError: an id has no embedding; the message names it (and its origin).
        """
        uids = list(uids)
        try:
            return np.fromiter((self.row_of[u] for u in uids), dtype=np.int64, count=len(uids))
        except KeyError:
            position = next(k for k, u in enumerate(uids) if u not in self.row_of)
            origin = f"{describe(position)}: " if describe is not None else ""
            raise TrialsError(
                f"{origin}'{uids[position]}' has no embedding in {self.source} ({len(self)} ids)"
            ) from None
