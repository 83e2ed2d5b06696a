"""Speaker database for enrolment, identification and verification against enrolled voices.

Storage: one SQLite file (Python's built-in :mod:`sqlite3`), chosen over
safetensors + a JSON index because

* every change is one transaction: a crash (even SIGKILL) or a full disk mid-``enroll``
  leaves the previous state, never a half-written speaker, without our own rename dance;
* several processes can share it (a server's workers, a CLI beside it): the file is in
  WAL mode (``journal_mode=WAL``), so readers never wait for a writer and always see a
  committed state (a speaker with all of its recordings or none of them); writers take
  the write lock at the start of their transaction (``BEGIN IMMEDIATE``) and queue for
  up to ``timeout_s`` (SQLite's busy timeout), and the rare "database is busy" answers
  SQLite gives without waiting (WAL recovery) are retried a bounded number of times
  before a one-line :class:`SpeakerDBError`;
* it is one file at rest: the ``-wal`` and ``-shm`` files beside it exist only while a
  connection is open (SQLite folds them back in when the last one closes; after a crash
  the next open recovers from them), so a closed database can be copied or mailed like
  any other file;
* adding a recording touches one row, not the whole file; no dependency beyond the
  standard library.

A file that is not a voxmetric speaker database (another application's SQLite file,
or not SQLite at all) is refused with a clear error before anything is written to it.

Schema (``SCHEMA_VERSION`` 1)::

    meta(key PRIMARY KEY, value)     -- schema_version, model_id, embedding_dim
    speakers(name PRIMARY KEY, embedding BLOB, count, created, updated)
    recordings(speaker -> speakers.name, source, embedding BLOB, added)

Embeddings are stored as little-endian float32 bytes. Each recording's embedding is
L2-normalised when enrolled; a speaker's embedding is the mean of its recordings'
normalised embeddings, normalised again (averaging in the normalised space, so a loud
or long recording with a larger raw norm does not dominate). Keeping the recordings
makes adding more recordings later exact. Scores are cosine similarities, as in
``verify`` and the evaluation recipe.

The database records the identity of the model that made its embeddings (``model_id``,
e.g. the model name plus the SHA-256 of its weights) and refuses to open under another
one: embeddings of different models live in unrelated spaces and their cosine is
meaningless.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..checks import same_model
from ..errors import ModelMismatchError, SpeakerDBError, UnknownSpeakerError
from .sqlite import _is_busy, _retry, _transaction, _use_wal

SCHEMA_VERSION = 1
_APPLICATION = "voxmetric-speakerdb"
_NAMES_NORMALISED = "names_normalised"  # meta key: every stored name is normalise_name's form
SAME_RECORDING_COSINE = 1 - 1e-5
"""Two normalised embeddings at least this close are the same audio: under one model the same
recording always gives the same embedding (up to float32 rounding), two different recordings
never come near it (:meth:`SpeakerDB.enroll_new`)."""


@dataclass(frozen=True, eq=False)  # eq would compare arrays ambiguously
class Speaker:
    """An enrolled speaker.

    Attributes:
        embedding: ``(dim,)`` float32, unit norm: the normalised mean of the recordings'
            normalised embeddings.
        count: number of enrolled recordings.
        created / updated: ISO 8601 UTC timestamps.
        sources: the recordings' source names (file names), in enrolment order.
    """

    name: str
    embedding: np.ndarray
    count: int
    created: str
    updated: str
    sources: list[str]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS speakers (
    name TEXT PRIMARY KEY, embedding BLOB NOT NULL, count INTEGER NOT NULL,
    created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    speaker TEXT NOT NULL REFERENCES speakers(name) ON DELETE CASCADE,
    source TEXT NOT NULL, embedding BLOB NOT NULL, added TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS recordings_speaker ON recordings(speaker);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def normalise_name(name: str) -> str:
    """A speaker's name as stored and looked up: stripped and in Unicode NFC, so that a name is
    found by the form it was sent with (" Zoë " typed with a combining diaeresis is "Zoë")."""
    if not isinstance(name, str):
        raise SpeakerDBError(f"a speaker name must be a string, got {name!r}")
    return unicodedata.normalize("NFC", name.strip())


def _normalise_stored_names(connection: sqlite3.Connection, path: str) -> None:
    """Names stored by versions that kept them as sent (e.g. in NFD, or with spaces) are renamed
    to :func:`normalise_name`'s form, so that lookups find them. A name whose normalised form is
    already taken stays as it is (a warning names both); a read-only file is left unchanged.
    Done once per database: the ``names_normalised`` meta key (set when the database is made)
    says every name is in that form, and opening it then reads no names."""
    try:
        if connection.execute("SELECT 1 FROM meta WHERE key = ?", (_NAMES_NORMALISED,)).fetchone():
            return
        stored = [row[0] for row in connection.execute("SELECT name FROM speakers")]
        renames = {name: normalise_name(name) for name in stored if normalise_name(name) != name}
        taken, clash = set(stored), False
        with _transaction(connection, immediate=True):
            connection.execute("PRAGMA defer_foreign_keys = ON")  # speaker and recordings renamed together
            for old, new in renames.items():
                if new in taken:
                    warnings.warn(f"{path}: speaker {old!r} is stored unnormalised beside {new!r}; it cannot be "
                                  f"looked up until {new!r} is removed (voxmetric speakers --remove)", stacklevel=3)
                    clash = True
                    continue
                connection.execute("UPDATE speakers SET name = ? WHERE name = ?", (new, old))
                connection.execute("UPDATE recordings SET speaker = ? WHERE speaker = ?", (new, old))
                taken.add(new)
            if not clash:
                connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (_NAMES_NORMALISED,))
    except sqlite3.OperationalError:  # read-only file, or busy: lookups of those names fail as before
        return


def _repeats(normalised: np.ndarray, sources: list[str], stored: list[tuple[str, bytes]]) -> dict[int, str]:
    """Rows of ``normalised`` that are a recording in ``stored`` (source, embedding blob) or an
    earlier row again: ``{row: the source name it repeats}``."""
    known = [_from_blob(blob).astype(np.float64) for _, blob in stored]
    names = [source for source, _ in stored]
    repeats = {}
    for i, vector in enumerate(normalised):
        cosines = np.stack(known) @ vector if known else np.zeros(0)
        if cosines.size and cosines.max() >= SAME_RECORDING_COSINE:
            repeats[i] = names[int(cosines.argmax())]
        else:
            known.append(vector)
            names.append(sources[i])
    return repeats


def _normalise_rows(embeddings: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.isfinite(embeddings).all() or (norms == 0).any():
        raise SpeakerDBError(f"{what}: embeddings must be finite and non-zero")
    return embeddings / norms


def _check_existing(path: str) -> None:
    """An existing ``path`` that cannot be a speaker database: a folder, or an empty file (a new
    database is never empty: :func:`_create` puts it in place whole, so an empty file is someone
    else's, e.g. notes made with ``touch``, and is not turned into a database)."""
    if os.path.isdir(path):
        raise SpeakerDBError(f"{path}: is a directory, not a speaker database")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise SpeakerDBError(f"{path}: exists and is not a speaker database (an empty file); left unchanged, "
                             f"choose another file")


def _create(path: str, model_id: str, timeout_s: float) -> None:
    """Put a new, initialised database at ``path``: made in a temporary file beside it, then
    linked into place, so no other process ever sees it half made. When another process
    created ``path`` meanwhile, its file stays and is used. Readable by the owner only
    (voiceprints; SQLite gives its -wal and -shm files this mode too).

    Raises:
        OSError, sqlite3.Error: the folder or the file cannot be made.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.new-")  # mode 0600
    os.close(fd)
    try:
        connection = sqlite3.connect(tmp, timeout=timeout_s, isolation_level=None)
        try:
            SpeakerDB._initialise(connection, path, model_id)
        finally:
            connection.close()  # the last connection: SQLite folds the WAL into the file
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: that one is used
        except OSError:  # no hard links on this file system: copy, never replacing an existing file
            try:
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with open(tmp, "rb") as source, os.fdopen(target, "wb") as copy:
                shutil.copyfileobj(source, copy)
    finally:
        for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm", f"{tmp}-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)


class SpeakerDB:
    """A speaker database file; open it with :meth:`open` (a context manager)."""

    def __init__(self, connection: sqlite3.Connection, path: str, model_id: str, embedding_dim: int | None):
        self._connection = connection
        self.path = path
        self.model_id = model_id
        self.embedding_dim = embedding_dim

    # --- opening ------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, model_id: str, create: bool = True, timeout_s: float = 30.0) -> "SpeakerDB":
        """Open (or create) the database at ``path`` for the model ``model_id``.

        Args:
            path: the database file.
            model_id: identity of the model whose embeddings go in (name + weights
                fingerprint); must equal the one the database was created with.
            create: create the file when missing; ``False`` makes a missing file an error.
            timeout_s: how long a writer waits for another writer's lock.

        Raises:
            SpeakerDBError: missing file (``create=False``), a file that cannot be created or
                opened (the message names the system's reason), not a voxmetric speaker
                database, or a newer schema.
            ModelMismatchError: the database was made with another model.
        """
        path = os.fspath(path)
        if not isinstance(model_id, str) or not model_id.strip():
            raise SpeakerDBError(f"{path}: model_id must be a non-empty string, got {model_id!r}")
        exists = os.path.exists(path)
        if not exists and not create:
            raise SpeakerDBError(f"{path}: no such speaker database (enrol a speaker first to create it)")
        if exists:
            _check_existing(path)
        try:
            if not exists:
                _create(path, model_id, timeout_s)
            connection = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            if isinstance(error, FileExistsError):  # os.makedirs met a file where a folder should be
                reason = f"{error.filename} is a file, not a folder"
            else:
                reason = getattr(error, "strerror", None) or str(error)
            raise SpeakerDBError(f"{path}: cannot open the speaker database ({reason})") from None
        try:
            meta = _retry(path, lambda: cls._initialise(connection, path, model_id))
        except BaseException:
            connection.close()
            raise
        if not same_model(meta.get("model_id"), model_id):
            connection.close()
            raise ModelMismatchError(
                f"{path}: holds embeddings of model {meta.get('model_id')!r}, not {model_id!r}; embeddings of "
                f"different models cannot be compared (use another database file, or re-enrol everyone with this model)")
        _normalise_stored_names(connection, path)
        dim = meta.get("embedding_dim")
        return cls(connection, path, model_id, int(dim) if dim else None)

    @staticmethod
    def model_of(path: str | os.PathLike) -> str:
        """The fingerprint of the model a database belongs to, read without a model.

        Raises:
            SpeakerDBError: missing file, not a voxmetric speaker database.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise SpeakerDBError(f"{path}: no such speaker database (enrol a speaker first to create it)")
        _check_existing(path)
        from pathlib import Path

        connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise SpeakerDBError(f"{path}: not a voxmetric speaker database ({error})") from None
        finally:
            connection.close()
        if meta.get("application") != _APPLICATION or not meta.get("model_id"):
            raise SpeakerDBError(f"{path}: not a voxmetric speaker database")
        return meta["model_id"]

    @staticmethod
    def _initialise(connection: sqlite3.Connection, path: str, model_id: str) -> dict[str, str]:
        try:
            connection.execute("PRAGMA foreign_keys = ON")
            # Read only until we know it is ours: another application's file stays untouched. An
            # SQLite file without tables (an empty database) is initialised like a new file.
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables:
                if "meta" not in tables:
                    foreign = ", ".join(sorted(tables)[:5]) or "none"
                    raise SpeakerDBError(f"{path}: not a voxmetric speaker database (its tables: {foreign}); "
                                         f"left unchanged, choose another file")
                meta = dict(connection.execute("SELECT key, value FROM meta"))
                if meta.get("application") != _APPLICATION:
                    raise SpeakerDBError(f"{path}: not a voxmetric speaker database (another application's "
                                         f"'meta' table); left unchanged, choose another file")
            _use_wal(connection)
            if not tables:  # two processes creating at once: the second finds the first's tables and model_id
                with _transaction(connection, immediate=True):
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        connection.execute(statement)
                    for key, value in (("application", _APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
                                       ("model_id", model_id), (_NAMES_NORMALISED, "1")):
                        connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and _is_busy(error):
                raise  # another process is writing: retried by the caller
            raise SpeakerDBError(f"{path}: not a voxmetric speaker database ({error})") from None
        if meta.get("application") != _APPLICATION:
            raise SpeakerDBError(f"{path}: not a voxmetric speaker database")
        if int(meta["schema_version"]) > SCHEMA_VERSION:
            raise SpeakerDBError(f"{path}: written by a newer voxmetric (schema {meta['schema_version']}, this one "
                                 f"reads {SCHEMA_VERSION}); upgrade voxmetric")
        return meta

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "SpeakerDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------

    def _retry(self, operation):
        return _retry(self.path, operation)

    def enroll(self, name: str, embeddings, sources: list[str], replace: bool = False) -> Speaker:
        """Enrol recordings of a speaker (one transaction).

        Args:
            name: the speaker's name.
            embeddings: ``(recordings, dim)`` embeddings (one per recording; ``(dim,)`` for one).
            sources: ``recordings`` source names (file names), stored for reference.
            replace: drop the speaker's earlier recordings first; otherwise an existing
                speaker's average also covers the new recordings.

        Returns:
            The speaker as this transaction stored it (another process may change it right after).
        """
        return self._enroll(name, embeddings, sources, replace, new_only=False)[0]

    def enroll_new(self, name: str, embeddings, sources: list[str],
                   replace: bool = False) -> tuple[Speaker, dict[int, str]]:
        """:meth:`enroll`, leaving out each recording the speaker has already (stored, or given
        earlier in ``embeddings``): the same audio enrolled twice would weigh twice in the
        average. A recording is the same as another when their normalised embeddings' cosine
        is at least :data:`SAME_RECORDING_COSINE`. The check and the write are one transaction.

        Returns:
            The speaker as stored (unchanged when every recording was left out) and
            ``{row of embeddings left out: the source name of the recording it repeats}``.
        """
        return self._enroll(name, embeddings, sources, replace, new_only=True)

    def _enroll(self, name, embeddings, sources, replace: bool, new_only: bool) -> tuple[Speaker, dict[int, str]]:
        name = self._check_name(name)
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if embeddings.ndim == 1:
            embeddings = embeddings[None, :]
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise SpeakerDBError(f"{self.path}: enrolling {name!r} needs (recordings, dim) embeddings, "
                                 f"got shape {embeddings.shape}")
        sources = [os.fspath(source) for source in sources]
        if len(sources) != embeddings.shape[0]:
            raise SpeakerDBError(f"{self.path}: enrolling {name!r}: {embeddings.shape[0]} embeddings but "
                                 f"{len(sources)} source names")
        normalised = _normalise_rows(embeddings, f"{self.path}: enrolling {name!r}")
        now = _now()

        def write() -> tuple[Speaker, dict[int, str]]:
            with _transaction(self._connection, immediate=True):
                self._check_dim(embeddings.shape[1], f"enrolling {name!r}", store=True)
                row = self._connection.execute("SELECT created FROM speakers WHERE name = ?", (name,)).fetchone()
                if row is not None and replace:
                    self._connection.execute("DELETE FROM recordings WHERE speaker = ?", (name,))
                repeated = _repeats(normalised, sources, self._recordings(name)) if new_only else {}
                if len(repeated) == len(sources):  # nothing new: the speaker stays as it is
                    return self._select(name), repeated
                created = now if row is None or replace else row[0]
                # The speaker row first: recordings reference it.
                self._connection.execute(
                    "INSERT INTO speakers (name, embedding, count, created, updated) VALUES (?, ?, 0, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET created = excluded.created, updated = excluded.updated",
                    (name, _to_blob(normalised[0]), created, now))
                self._connection.executemany(
                    "INSERT INTO recordings (speaker, source, embedding, added) VALUES (?, ?, ?, ?)",
                    [(name, source, _to_blob(vector), now)
                     for i, (source, vector) in enumerate(zip(sources, normalised)) if i not in repeated])
                rows = self._recordings(name)
                mean = np.stack([_from_blob(blob) for _, blob in rows]).astype(np.float64).mean(axis=0)
                blob = _to_blob(mean / np.linalg.norm(mean))
                self._connection.execute("UPDATE speakers SET embedding = ?, count = ? WHERE name = ?",
                                         (blob, len(rows), name))
            return Speaker(name, _from_blob(blob), len(rows), created, now, [source for source, _ in rows]), repeated

        return self._retry(write)

    def _recordings(self, name: str) -> list[tuple[str, bytes]]:
        return self._connection.execute(
            "SELECT source, embedding FROM recordings WHERE speaker = ? ORDER BY id", (name,)).fetchall()

    def _select(self, name: str) -> Speaker:
        """The stored speaker (inside the caller's transaction)."""
        row = self._connection.execute(
            "SELECT embedding, count, created, updated FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise self._unknown(name)
        sources = [source for source, _ in self._recordings(name)]
        return Speaker(name, _from_blob(row[0]), int(row[1]), row[2], row[3], sources)

    def remove(self, name: str) -> str:
        """Remove a speaker and its recordings; returns the name as it was stored.

        Raises:
            UnknownSpeakerError: no such speaker.
        """
        name = normalise_name(name)

        def write() -> None:
            with _transaction(self._connection, immediate=True):
                if self._connection.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount == 0:
                    raise self._unknown(name)
                self._connection.execute("DELETE FROM recordings WHERE speaker = ?", (name,))

        self._retry(write)
        return name

    # --- reading ------------------------------------------------------------------

    def names(self) -> list[str]:
        """Enrolled speaker names, sorted."""
        return self._retry(lambda: [row[0] for row in self._connection.execute(
            "SELECT name FROM speakers ORDER BY name")])

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM speakers").fetchone()[0]

    def __contains__(self, name: str) -> bool:
        return self._connection.execute("SELECT 1 FROM speakers WHERE name = ?",
                                        (normalise_name(name),)).fetchone() is not None

    def get(self, name: str) -> Speaker:
        """The stored speaker ``name``.

        Raises:
            UnknownSpeakerError: no such speaker.
        """
        name = normalise_name(name)

        def read() -> Speaker:
            with _transaction(self._connection):  # one snapshot: the speaker row and its recordings agree
                return self._select(name)

        return self._retry(read)

    def verify(self, name: str, embedding) -> float:
        """Cosine similarity between ``embedding`` ``(dim,)`` and the enrolled speaker ``name``."""
        probe = self._check_probe(embedding)
        # Unit vectors stored in float32: a product may pass 1 by rounding; cosines stay in [-1, 1].
        return float(np.clip(self.get(name).embedding.astype(np.float64) @ probe, -1.0, 1.0))

    def identify(self, embedding, top: int = 3) -> list[tuple[str, float]]:
        """The ``top`` enrolled speakers closest to ``embedding`` ``(dim,)``.

        Returns:
            ``[(name, cosine score), ...]``, best first (fewer when fewer are enrolled).

        Raises:
            SpeakerDBError: the database is empty, ``top < 1``, or the dimension differs.
        """
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
            raise SpeakerDBError(f"top must be a whole number of speakers, at least 1, got {top!r}")
        probe = self._check_probe(embedding)
        rows = self._retry(lambda: self._connection.execute("SELECT name, embedding FROM speakers").fetchall())
        if not rows:
            raise SpeakerDBError(f"{self.path}: no speakers enrolled; enrol some before identifying")
        enrolled = np.stack([_from_blob(blob) for _, blob in rows]).astype(np.float64)
        scores = np.clip(enrolled @ probe, -1.0, 1.0)
        order = np.argsort(-scores, kind="stable")[:top]
        return [(rows[i][0], float(scores[i])) for i in order]

    # --- checks -------------------------------------------------------------------

    def _check_name(self, name) -> str:
        if not isinstance(name, str) or not name.strip():
            raise SpeakerDBError(f"{self.path}: a speaker name must be a non-empty string, got {name!r}")
        return normalise_name(name)

    def _check_dim(self, dim: int, what: str, store: bool = False) -> None:
        if self.embedding_dim is None:
            stored = self._connection.execute("SELECT value FROM meta WHERE key = 'embedding_dim'").fetchone()
            if stored is not None:
                self.embedding_dim = int(stored[0])
            elif store:
                self._connection.execute("INSERT INTO meta (key, value) VALUES ('embedding_dim', ?)", (str(dim),))
                self.embedding_dim = dim
                return
            else:
                return
        if dim != self.embedding_dim:
            raise SpeakerDBError(f"{self.path}: {what}: embeddings have dimension {dim}, the database holds "
                                 f"{self.embedding_dim}-dimensional ones")

    def _check_probe(self, embedding) -> np.ndarray:
        probe = np.asarray(embedding, dtype=np.float64)
        if probe.ndim != 1:
            raise SpeakerDBError(f"{self.path}: expected one (dim,) embedding, got shape {probe.shape}")
        self._check_dim(probe.shape[0], "probe")
        return _normalise_rows(probe[None, :], f"{self.path}: probe")[0]

    def _unknown(self, name: str) -> UnknownSpeakerError:
        known = self.names()
        listing = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
        return UnknownSpeakerError(f"{self.path}: no speaker named {name!r} is enrolled (enrolled: {listing})")
