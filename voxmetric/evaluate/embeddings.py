"""Embedding files: ids plus an ``(N, D)`` float32 matrix, as ``.npz`` or ``.safetensors``.

* ``.npz``: ``np.savez`` with two arrays, ``ids`` (unicode strings) and ``embeddings``,
  and a 0-d string array ``metadata`` holding a JSON object; loaded with
  ``allow_pickle=False``, so a file never executes code.
* ``.safetensors``: one tensor ``embeddings``; the ids are a JSON list in the header
  metadata under ``"ids"``, the metadata a JSON object under ``"voxmetric"``.

The metadata records which model made the embeddings: ``{"model": fingerprint,
"frontend": front-end settings}`` (:attr:`SpeakerModel.fingerprint
<voxmetric.inference.speaker_model.SpeakerModel.fingerprint>`). Files written before it
existed (or by other tools) load with empty metadata; :func:`check_same_model` refuses to
mix embeddings whose fingerprints differ.

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

from ..checks import same_model
from ..errors import EmbeddingsError, TrialsError, VoxmetricError
from ..fileio import atomic_open, atomic_path, check_writable, dumps_json

FORMATS = (".npz", ".safetensors")
"""File name endings :func:`save_embeddings` and :func:`load_embeddings` understand."""


def _format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise EmbeddingsError(
            f"{path}: unknown embeddings format '{suffix}'; use one of {', '.join(FORMATS)}"
        )
    return suffix


def check_embeddings_output(path: str | os.PathLike) -> None:
    """Refuse, before any embedding, an output name :func:`save_embeddings` would not write:
    an unknown ending, or a path that cannot be written (:func:`~voxmetric.fileio.check_writable`).

    Raises:
        EmbeddingsError: unknown ending.
        WriteError: a folder, a parent that is a file, no permission.
    """
    _format(os.fspath(path))
    check_writable(path)


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


def save_embeddings(path: str | os.PathLike, ids: Sequence[str], matrix: np.ndarray,
                    metadata: dict | None = None) -> None:
    """Write ids and their ``(N, D)`` embeddings atomically; format by file name ending.

    Args:
        path: ``*.npz`` or ``*.safetensors``.
        ids: ``N`` unique strings (utterance ids or paths), row order of ``matrix``.
        matrix: ``(N, D)`` real array, stored as float32.
        metadata: JSON-serialisable facts, normally ``{"model": fingerprint, "frontend": settings}``.

    Raises:
        EmbeddingsError: unknown ending, ``len(ids) != N``, duplicate ids, non-finite values.
    """
    path = os.fspath(path)
    suffix = _format(path)
    ids, matrix = _validate(path, ids, matrix)
    meta = dumps_json(metadata or {})
    if suffix == ".npz":
        with atomic_open(path, "wb") as f:
            np.savez(f, ids=np.array(ids, dtype=np.str_), embeddings=matrix, metadata=np.array(meta, dtype=np.str_))
    else:
        from safetensors.numpy import save_file

        with atomic_path(path) as tmp:
            save_file({"embeddings": matrix}, tmp, metadata={"ids": json.dumps(ids), "voxmetric": meta})


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a file written by :func:`save_embeddings`.

    Returns:
        ``(ids, matrix)``: ``N`` ids and the ``(N, D)`` float32 matrix.

    Raises:
        EmbeddingsError: missing, empty or corrupt file, unknown ending, missing
            fields, ids not matching the rows.
    """
    ids, matrix, _ = load_embeddings_with_metadata(path)
    return ids, matrix


def load_embeddings_with_metadata(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict]:
    """``(ids, matrix, metadata)`` of a file; ``metadata`` is ``{}`` for files without it."""
    path = os.fspath(path)
    suffix = _format(path)
    if os.path.isdir(path):
        raise EmbeddingsError(f"{path}: is a directory, not an embeddings file")
    if not os.path.isfile(path):
        raise EmbeddingsError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise EmbeddingsError(f"{path}: empty file (0 bytes)")
    ids, matrix, meta = _load_npz(path) if suffix == ".npz" else _load_safetensors(path)
    ids, matrix = _validate(path, ids, matrix)
    return ids, matrix, _parse_metadata(path, meta)


def _parse_metadata(path: str, text: str | None) -> dict:
    if text is None:
        return {}
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise EmbeddingsError(f"{path}: metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise EmbeddingsError(f"{path}: metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def check_same_model(*tables: "EmbeddingTable") -> None:
    """Refuse to compare embeddings of different models.

    Tables without a recorded fingerprint (older files) pass.

    Raises:
        EmbeddingsError: two tables record different model fingerprints (one line,
            naming both files and fingerprints).
    """
    known = [t for t in tables if t.fingerprint]
    for other in known[1:]:
        if not same_model(other.fingerprint, known[0].fingerprint):
            raise EmbeddingsError(
                f"{known[0].source} holds embeddings of model {known[0].fingerprint} but {other.source} of "
                f"model {other.fingerprint}: scores across models are meaningless; embed both with the same model"
            )


def _load_npz(path: str) -> tuple[list[str], np.ndarray, str | None]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        raise EmbeddingsError(f"{path}: cannot read ({error.strerror})") from None
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise EmbeddingsError(f"{path}: unreadable or corrupt embeddings file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("ids", "embeddings") if key not in data.files]
            if missing:
                raise EmbeddingsError(
                    f"{path}: not a voxmetric embeddings file (missing array "
                    f"{', '.join(repr(m) for m in missing)}; found {data.files})"
                )
            ids, matrix = data["ids"], data["embeddings"]
            meta = str(data["metadata"]) if "metadata" in data.files else None
    except ValueError as error:
        if "pickle" in str(error):  # object arrays: never loaded, and numpy's advice to allow them is not passed on
            raise EmbeddingsError(f"{path}: unreadable or corrupt embeddings file (it holds Python objects, "
                                  f"which are never loaded; write it with 'voxmetric embed')") from None
        raise EmbeddingsError(f"{path}: unreadable or corrupt embeddings file ({error})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise EmbeddingsError(f"{path}: unreadable or corrupt embeddings file ({error})") from None
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise EmbeddingsError(f"{path}: 'ids' must be a 1-d array of strings, got {ids.dtype} {ids.shape}")
    return ids.tolist(), matrix, meta


def _load_safetensors(path: str) -> tuple[list[str], np.ndarray, str | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            if "embeddings" not in f.keys():
                raise EmbeddingsError(f"{path}: not a voxmetric embeddings file (no tensor 'embeddings')")
            matrix = f.get_tensor("embeddings")
    except (SafetensorError, OSError, ValueError) as error:
        raise EmbeddingsError(f"{path}: unreadable or corrupt embeddings file ({error})") from None
    if "ids" not in metadata:
        raise EmbeddingsError(f"{path}: no 'ids' in the safetensors metadata")
    try:
        ids = json.loads(metadata["ids"])
    except json.JSONDecodeError as error:
        raise EmbeddingsError(f"{path}: 'ids' metadata is not valid JSON ({error})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise EmbeddingsError(f"{path}: 'ids' metadata must be a JSON list of strings")
    return ids, matrix, metadata.get("voxmetric")


class EmbeddingTable:
    """Embeddings with a lookup from id to row.

    Args:
        ids: ``N`` unique ids.
        matrix: ``(N, D)`` embeddings, stored as float32.
        source: where they came from (a file name), quoted in error messages.
        metadata: ``{"model": fingerprint, "frontend": settings}`` when known.
    """

    def __init__(self, ids: Sequence[str], matrix: np.ndarray, source: str = "embeddings",
                 metadata: dict | None = None):
        self.source = source
        self.ids, self.matrix = _validate(source, ids, matrix)
        self.row_of = {uid: row for row, uid in enumerate(self.ids)}
        self.metadata = dict(metadata or {})

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingTable:
        """Read a table from a file written by :func:`save_embeddings`."""
        ids, matrix, metadata = load_embeddings_with_metadata(path)
        return cls(ids, matrix, source=os.fspath(path), metadata=metadata)

    def save(self, path: str | os.PathLike) -> None:
        save_embeddings(path, self.ids, self.matrix, metadata=self.metadata)

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the model that made the embeddings, when the file records it."""
        return self.metadata.get("model")

    def rekeyed(self, ids: Sequence[str]) -> EmbeddingTable:
        """The same rows under new ids (same order)."""
        return EmbeddingTable(ids, self.matrix, source=self.source, metadata=self.metadata)

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
