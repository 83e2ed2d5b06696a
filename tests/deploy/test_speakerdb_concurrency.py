"""Speaker database under concurrency: real processes (spawn) on one file, SIGKILL mid-write,
and another application's SQLite file.

Every recording's embedding is a deterministic function of its source name, so a reader
can recompute what a speaker's stored embedding must be from the sources it sees: a
speaker with a partial set of recordings (or an embedding that does not match them)
is caught, not just a missing row.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import time
import zlib

import numpy as np
import pytest

from voxmetric.deploy.speakerdb import SpeakerDB, SpeakerDBError

MODEL = "test-model:sha256:concurrency"
DIM = 16
BATCH = 3  # recordings per enrolment call


def _vector(source: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(source.encode()))
    return rng.standard_normal(DIM)


def _expected_embedding(sources: list[str]) -> np.ndarray:
    rows = np.stack([_vector(s) for s in sources])
    mean = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).mean(axis=0)
    return mean / np.linalg.norm(mean)


def _check_whole(speaker) -> None:
    """A speaker as a reader sees it: whole enrolment batches, embedding consistent with them."""
    assert speaker.count == len(speaker.sources), (speaker.name, speaker.count, speaker.sources)
    assert speaker.count > 0 and speaker.count % BATCH == 0, (speaker.name, speaker.sources)
    np.testing.assert_allclose(speaker.embedding, _expected_embedding(speaker.sources), atol=1e-5)


def _worker(db_path: str, worker: int, seconds: float, start_at: float) -> dict:
    """Enrol, add to, identify, read and remove this worker's speakers (and read everyone's)."""
    rng = random.Random(worker)
    counts = {"enrolments": 0, "identifications": 0, "removals": 0, "reads": 0}
    errors: list[str] = []
    mine: dict[str, int] = {}  # name -> recordings this worker believes are stored
    serial = 0
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = time.time() + seconds
    while time.time() < deadline:
        action = rng.random()
        try:
            with SpeakerDB.open(db_path, MODEL) as db:
                if action < 0.4 or not mine:
                    if mine and rng.random() < 0.3:  # add recordings to an existing speaker
                        name = rng.choice(sorted(mine))
                    else:
                        name = f"w{worker}-s{serial}"
                    sources = [f"{name}-r{serial}-{k}.wav" for k in range(BATCH)]
                    serial += 1
                    stored = db.enroll(name, np.stack([_vector(s) for s in sources]), sources)
                    mine[name] = mine.get(name, 0) + BATCH
                    assert stored.count == mine[name], (name, stored.count, mine[name])
                    counts["enrolments"] += 1
                elif action < 0.7:
                    target = rng.choice(sorted(mine))
                    probe = db.get(target).embedding
                    best, score = db.identify(probe, top=3)[0]
                    assert score > 0.999, (target, best, score)  # itself (or an identical one)
                    counts["identifications"] += 1
                elif action < 0.85:
                    for name in db.names():  # everyone's speakers, mid-flight: whole or absent
                        try:
                            _check_whole(db.get(name))
                        except SpeakerDBError:  # removed by its owner between names() and get()
                            continue
                        counts["reads"] += 1
                else:
                    name = rng.choice(sorted(mine))
                    db.remove(name)
                    del mine[name]
                    counts["removals"] += 1
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            errors.append(f"{type(error).__name__}: {error}")
    return {"worker": worker, **counts, "errors": errors, "mine": mine}


@pytest.mark.slow
def test_eight_processes_enrol_identify_and_remove_on_one_file(tmp_path):
    db_path = str(tmp_path / "speakers.db")
    workers, seconds = 8, 4.0
    context = mp.get_context("spawn")
    with context.Pool(workers) as pool:
        start_at = time.time() + 3.0  # all started (spawn imports numpy) before the clock runs
        results = pool.starmap(_worker, [(db_path, w, seconds, start_at) for w in range(workers)])
    totals = {key: sum(r[key] for r in results) for key in ("enrolments", "identifications", "removals", "reads")}
    errors = [e for r in results for e in r["errors"]]
    print(f"\n8 processes x {seconds:.0f} s: {totals}, errors {len(errors)}")
    assert errors == []
    assert all(r["enrolments"] > 0 for r in results), results  # every process wrote
    assert totals["identifications"] > 0 and totals["removals"] > 0 and totals["reads"] > 0, totals
    # Nothing lost, nothing half-written: the file holds exactly what the workers were told.
    expected = {name: count for r in results for name, count in r["mine"].items()}
    with SpeakerDB.open(db_path, MODEL, create=False) as db:
        assert sorted(db.names()) == sorted(expected)
        for name, count in expected.items():
            speaker = db.get(name)
            _check_whole(speaker)
            assert speaker.count == count
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = connection.execute(
            "SELECT COUNT(*) FROM recordings WHERE speaker NOT IN (SELECT name FROM speakers)").fetchone()[0]
        assert orphans == 0


def _enrol_forever(db_path: str, ready_path: str) -> None:
    with SpeakerDB.open(db_path, MODEL) as db:
        serial = 0
        while True:
            name = f"k{serial % 50}"
            sources = [f"{name}-{serial}-{k}.wav" for k in range(BATCH * 4)]
            db.enroll(name, np.stack([_vector(s) for s in sources]), sources, replace=serial % 3 == 0)
            serial += 1
            if serial == 5:
                open(ready_path, "w").close()


@pytest.mark.slow
def test_sigkill_mid_enrolment_leaves_whole_speakers(tmp_path):
    db_path = str(tmp_path / "speakers.db")
    context = mp.get_context("spawn")
    for round_ in range(3):
        ready = tmp_path / f"ready{round_}"
        process = context.Process(target=_enrol_forever, args=(db_path, str(ready)))
        process.start()
        deadline = time.time() + 60
        while not ready.exists():
            assert process.is_alive() and time.time() < deadline, "the enrolling process did not start"
            time.sleep(0.01)
        time.sleep(0.05 + 0.1 * round_)  # enrolling in a tight loop: the kill lands inside a transaction or between
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        assert process.exitcode == -signal.SIGKILL
        with SpeakerDB.open(db_path, MODEL, create=False) as db:
            names = db.names()
            assert names
            for name in names:
                _check_whole(db.get(name))
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("schema", [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'a@b.c');",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('app', 'photos');",
    "CREATE TABLE meta (id INTEGER, blob BLOB); INSERT INTO meta VALUES (1, x'00');",
])
def test_another_applications_sqlite_file_is_refused_untouched(tmp_path, schema):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(schema)
    connection.close()
    before = _digest(path)
    with pytest.raises(SpeakerDBError, match="other.db: not a voxmetric speaker database"):
        SpeakerDB.open(path, MODEL)
    assert _digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["other.db"]  # no journal or WAL made beside it


def test_a_non_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)
    before = _digest(path)
    with pytest.raises(SpeakerDBError, match="notes.db: not a voxmetric speaker database"):
        SpeakerDB.open(path, MODEL)
    assert _digest(path) == before


def _open_new(db_path: str, start_at: float) -> str:
    while time.time() < start_at:
        time.sleep(0.001)
    try:
        with SpeakerDB.open(db_path, MODEL) as db:
            db.enroll(f"p{os.getpid()}", np.ones((1, DIM)), ["x.wav"])
        return "ok"
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"


@pytest.mark.slow
def test_processes_creating_the_same_new_file_at_once(tmp_path):
    """The creators race: one has put the new file in WAL mode (the file is no longer empty)
    before its schema commits; the others must wait for it, not call it a foreign file."""
    context = mp.get_context("spawn")
    for round_ in range(3):
        db_path = str(tmp_path / f"new{round_}.db")
        with context.Pool(8) as pool:
            start_at = time.time() + 3.0
            outcomes = pool.starmap(_open_new, [(db_path, start_at)] * 8)
        assert outcomes == ["ok"] * 8
        with SpeakerDB.open(db_path, MODEL, create=False) as db:
            assert len(db) == 8


def test_an_sqlite_file_without_tables_is_initialised(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).execute("PRAGMA user_version = 0").connection.close()
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("alice", np.ones((1, DIM)), ["a.wav"])
    with SpeakerDB.open(path, MODEL, create=False) as db:
        assert db.names() == ["alice"]
