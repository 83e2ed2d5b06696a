"""SQLite under concurrent processes: one transaction per change, the write lock taken up
front, bounded retries with back-off when SQLite answers "busy", and WAL mode (readers never
wait for writers and never see half a transaction)."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time

from ..errors import SpeakerDBError

_BUSY_RETRIES = 8
"""Extra attempts at a statement SQLite answered "busy"/"locked" without waiting (after its busy timeout)."""


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection, immediate: bool = False):
    """One SQLite transaction: committed on success, rolled back on any exception.

    ``immediate`` takes the write lock at the start, so two writers queue instead of
    failing when both try to upgrade a read lock.
    """
    connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _retry(path: str, operation):
    """Run ``operation`` (a whole transaction), again after a short random back-off when SQLite
    answers "database is locked/busy" (its busy timeout has already waited for ordinary
    lock waits); at most :data:`_BUSY_RETRIES` more times, then a one-line error."""
    for attempt in range(_BUSY_RETRIES + 1):
        try:
            return operation()
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise SpeakerDBError(f"{path}: speaker database error ({error})") from None
            if attempt == _BUSY_RETRIES:
                raise SpeakerDBError(f"{path}: speaker database is busy (still locked by another process after "
                                     f"{_BUSY_RETRIES + 1} attempts); try again") from None
            time.sleep(min(0.05 * 2 ** attempt, 1.0) * (0.5 + random.random()))


def _use_wal(connection: sqlite3.Connection) -> None:
    """Put the file in WAL mode (persistent: a no-op once done)."""
    mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        connection.execute("PRAGMA journal_mode = WAL")
