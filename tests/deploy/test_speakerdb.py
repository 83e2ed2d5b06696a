"""Speaker database: round trip, averaging in the normalised space, model identity, identify."""

import contextlib
import os
import sqlite3
import stat
import unicodedata

import numpy as np
import pytest

from voxmetric.deploy import speakerdb
from voxmetric.deploy.speakerdb import ModelMismatchError, SpeakerDB, SpeakerDBError, UnknownSpeakerError

MODEL = "ecapa-small:sha256:0123abcd"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "speakers.db"


def test_round_trip_in_a_single_file(path):
    with SpeakerDB.open(path, MODEL) as db:
        stored = db.enroll("alice", [[3.0, 4.0, 0.0]], ["a1.wav"])
    assert os.listdir(path.parent) == ["speakers.db"]  # WAL folded back in when the last connection closes
    with SpeakerDB.open(path, MODEL, create=False) as db:
        alice = db.get("alice")
    assert os.listdir(path.parent) == ["speakers.db"]
    np.testing.assert_allclose(alice.embedding, [0.6, 0.8, 0.0], atol=1e-7)
    np.testing.assert_array_equal(alice.embedding, stored.embedding)
    assert (alice.name, alice.count, alice.sources, alice.created) == ("alice", 1, ["a1.wav"], stored.created)
    assert alice.embedding.dtype == np.float32 and alice.created <= alice.updated


def test_average_of_normalised_embeddings_by_hand(path):
    with SpeakerDB.open(path, MODEL) as db:
        # Normalised: (0.6, 0.8, 0) and (0, 0, 1); mean (0.3, 0.4, 0.5), norm sqrt(0.5).
        first = db.enroll("alice", [[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], ["a1.wav", "a2.wav"])
        np.testing.assert_allclose(first.embedding, np.array([0.3, 0.4, 0.5]) / np.sqrt(0.5), atol=1e-6)
        # Adding (0, 5, 0) -> (0, 1, 0): mean of three (0.2, 0.6, 1/3), re-normalised.
        second = db.enroll("alice", [[0.0, 5.0, 0.0]], ["a3.wav"])
        mean = np.array([0.2, 0.6, 1 / 3])
        np.testing.assert_allclose(second.embedding, mean / np.linalg.norm(mean), atol=1e-6)
        assert second.count == 3 and second.sources == ["a1.wav", "a2.wav", "a3.wav"]
        assert second.created == first.created
        replaced = db.enroll("alice", [[0.0, 0.0, -1.0]], ["new.wav"], replace=True)
        np.testing.assert_allclose(replaced.embedding, [0, 0, -1], atol=1e-7)
        assert replaced.count == 1 and replaced.sources == ["new.wav"]


def test_refuses_another_models_database(path):
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("alice", [[1.0, 0.0]], ["a.wav"])
    with pytest.raises(ModelMismatchError, match="ecapa-small.*not 'tdnn"):
        SpeakerDB.open(path, "tdnn:sha256:ffff")
    with SpeakerDB.open(path, MODEL) as db:  # unchanged by the refused open
        assert db.names() == ["alice"]
    # The same weights under another file name (a renamed best.pt, an export) are the same model.
    with SpeakerDB.open(path, "renamed:sha256:0123abcd") as db:
        assert db.names() == ["alice"]


def test_fingerprints_compare_by_their_digest():
    from voxmetric.checks import same_model

    assert same_model("best:sha256:abc", "model:sha256:abc")
    assert not same_model("best:sha256:abc", "best:sha256:abd")
    assert same_model("plain", "plain") and not same_model("plain", "other") and same_model(None, None)


def test_remove_list_and_unknown_names(path):
    with SpeakerDB.open(path, MODEL) as db:
        for name in ("carol", "alice", "bob"):
            db.enroll(name, [[1.0, 0.0]], [f"{name}.wav"])
        assert db.names() == ["alice", "bob", "carol"] and len(db) == 3 and "bob" in db
        db.remove("bob")
        assert db.names() == ["alice", "carol"]
        for call in (lambda: db.get("bob"), lambda: db.remove("bob"), lambda: db.verify("bob", [1.0, 0.0])):
            with pytest.raises(UnknownSpeakerError, match="'bob'.*enrolled: alice, carol"):
                call()


def test_identify_and_verify_pick_the_right_speaker(path, rng):
    centres = rng.normal(size=(5, 32))
    names = [f"speaker{i}" for i in range(5)]
    with SpeakerDB.open(path, MODEL) as db:
        with pytest.raises(SpeakerDBError, match="no speakers enrolled"):
            db.identify(centres[0])
        for name, centre in zip(names, centres):
            recordings = centre + 0.3 * rng.normal(size=(3, 32))
            db.enroll(name, recordings, [f"{name}-{j}.wav" for j in range(3)])
        for name, centre in zip(names, centres):
            probe = centre + 0.3 * rng.normal(size=32)
            ranked = db.identify(probe, top=3)
            assert len(ranked) == 3 and ranked[0][0] == name
            assert [score for _, score in ranked] == sorted((score for _, score in ranked), reverse=True)
            assert db.verify(name, probe) == pytest.approx(ranked[0][1])
        assert len(db.identify(centres[0], top=10)) == 5


def test_bad_inputs_are_clear_errors(path, tmp_path):
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("alice", [[1.0, 0.0, 0.0]], ["a.wav"])
        with pytest.raises(SpeakerDBError, match="dimension 2.*3-dimensional"):
            db.enroll("bob", [[1.0, 0.0]], ["b.wav"])
        with pytest.raises(SpeakerDBError, match="dimension 4"):
            db.identify([1.0, 0.0, 0.0, 0.0])
        with pytest.raises(SpeakerDBError, match="2 embeddings but 1 source"):
            db.enroll("bob", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ["b.wav"])
        with pytest.raises(SpeakerDBError, match="finite and non-zero"):
            db.enroll("bob", [[0.0, 0.0, 0.0]], ["b.wav"])
        assert db.names() == ["alice"]  # failed enrolments changed nothing
    with pytest.raises(SpeakerDBError, match="no such speaker database"):
        SpeakerDB.open(tmp_path / "missing.db", MODEL, create=False)
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello, this is not SQLite\n" * 100)
    with pytest.raises(SpeakerDBError, match="notes.txt: not a voxmetric speaker database"):
        SpeakerDB.open(not_a_db, MODEL)


def test_a_second_handle_sees_committed_changes(path):
    with SpeakerDB.open(path, MODEL) as writer, SpeakerDB.open(path, MODEL) as reader:
        writer.enroll("alice", [[1.0, 0.0]], ["a.wav"])
        assert reader.names() == ["alice"]
        assert reader.identify([0.9, 0.1], top=1)[0][0] == "alice"


def test_enroll_returns_what_its_own_transaction_wrote(path, monkeypatch):
    with SpeakerDB.open(path, MODEL) as db, SpeakerDB.open(path, MODEL) as other:
        db.enroll("x", [[1.0, 0.0]], ["a.wav"])
        real = speakerdb._transaction

        @contextlib.contextmanager
        def then_removed(connection, immediate=False):
            with real(connection, immediate):
                yield
            if immediate and connection is db._connection:
                other.remove("x")  # another process, right after the enrolment's commit

        monkeypatch.setattr(speakerdb, "_transaction", then_removed)
        speaker = db.enroll("x", [[0.0, 1.0]], ["b.wav"])
        assert (speaker.name, speaker.count, speaker.sources) == ("x", 2, ["a.wav", "b.wav"])
        np.testing.assert_allclose(speaker.embedding, np.array([1.0, 1.0]) / np.sqrt(2), atol=1e-6)
        assert db.names() == []


def test_a_name_is_found_by_the_form_it_was_sent_with(path):
    composed, decomposed = unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")
    assert composed != decomposed
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll(f"  {composed} ", [[1.0, 0.0]], ["a.wav"])
        assert db.enroll(decomposed, [[1.0, 0.0]], ["b.wav"]).count == 2  # the same speaker
        assert db.names() == [composed] and f" {decomposed} " in db
        assert db.get(f"{decomposed}\t").sources == ["a.wav", "b.wav"]
        assert db.verify(f" {decomposed}", [2.0, 0.0]) == pytest.approx(1.0)
        assert db.remove(f"  {decomposed}  ") == composed
        assert db.names() == []


def test_names_stored_unnormalised_by_earlier_versions_are_found(path):
    composed, decomposed = unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("Ann", [[1.0, 0.0]], ["a.wav"])
        db.enroll("Bob", [[0.0, 1.0]], ["b.wav"])
        db.enroll("Bo", [[0.6, 0.8]], ["c.wav"])
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:  # as versions before normalisation stored them
        raw.execute("DELETE FROM meta WHERE key = 'names_normalised'")  # (they did not have this key)
        for old, new in ((decomposed, "Ann"), (" Bo ", "Bob")):
            raw.execute("UPDATE speakers SET name = ? WHERE name = ?", (old, new))
            raw.execute("UPDATE recordings SET speaker = ? WHERE speaker = ?", (old, new))
    with pytest.warns(UserWarning, match="speaker ' Bo ' is stored unnormalised beside 'Bo'"):
        db = SpeakerDB.open(path, MODEL)
    with db:
        assert db.names() == sorted([" Bo ", "Bo", composed])
        assert db.get(decomposed).sources == ["a.wav"] and db.get(composed).count == 1
        assert db.remove("Bo") == "Bo"
    with SpeakerDB.open(path, MODEL) as db:  # the clash gone, the stored form is renamed too
        assert db.names() == ["Bo", composed] and db.get("Bo").sources == ["b.wav"]


def test_the_command_line_shows_a_library_warning_as_one_line(path, capsys):
    from voxmetric.cli import main

    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("Bo", [[1.0, 0.0]], ["a.wav"])
        db.enroll("Bob", [[0.0, 1.0]], ["b.wav"])
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:  # a database of an earlier version
        raw.execute("DELETE FROM meta WHERE key = 'names_normalised'")
        raw.execute("UPDATE speakers SET name = ' Bo ' WHERE name = 'Bob'")
        raw.execute("UPDATE recordings SET speaker = ' Bo ' WHERE speaker = 'Bob'")
    assert main(["speakers", "--db", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"voxmetric: warning: {path}: speaker ' Bo ' is stored unnormalised beside 'Bo'; it cannot be looked up " \
           f"until 'Bo' is removed (voxmetric speakers --remove)\n" in err
    assert ".py:" not in err and "warnings.warn" not in err


def test_a_new_database_is_readable_by_its_owner_only(path):
    umask = os.umask(0o022)
    try:
        with SpeakerDB.open(path, MODEL) as db:
            db.enroll("alice", [[1.0, 0.0]], ["a.wav"])
            assert stat.S_IMODE(os.stat(f"{path}-wal").st_mode) == 0o600
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_database_that_cannot_be_opened_is_one_line_naming_path_and_reason(tmp_path, monkeypatch):
    if os.path.isdir("/proc/self"):  # Linux: no folder can be made in /proc, even by root
        with pytest.raises(SpeakerDBError, match=r"^/proc/voxmetric-no-such/s\.db: cannot open the speaker "
                                                 r"database \(No such file or directory\)$"):
            SpeakerDB.open("/proc/voxmetric-no-such/s.db", MODEL)
    a_file = tmp_path / "token.txt"
    a_file.write_text("not a folder\n")
    with pytest.raises(SpeakerDBError, match=r"token.txt/s.db: cannot open the speaker database \(/.*/token.txt is a "
                                             r"file, not a folder\)$"):
        SpeakerDB.open(a_file / "s.db", MODEL)

    def refused(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(speakerdb.sqlite3, "connect", refused)
    with pytest.raises(SpeakerDBError, match=r"s2.db: cannot open the speaker database \(unable to open database file\)"):
        SpeakerDB.open(tmp_path / "s2.db", MODEL)


def test_a_folder_without_write_permission_is_one_line(tmp_path, monkeypatch):
    """What a folder without write permission gives (simulated: root, as in CI, ignores the bits)."""
    import errno
    import tempfile

    def locked(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", locked)
    folder = tmp_path / "locked"
    folder.mkdir()
    with pytest.raises(SpeakerDBError, match=r"locked/s.db: cannot open the speaker database \(Permission denied\)"):
        SpeakerDB.open(folder / "s.db", MODEL)
    assert os.listdir(folder) == []


def test_an_empty_file_or_a_folder_is_refused_untouched(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.touch()  # what SpeakerDB.open never leaves behind: a new database is put in place whole
    for open_it in (lambda: SpeakerDB.open(notes, MODEL), lambda: SpeakerDB.model_of(notes)):
        with pytest.raises(SpeakerDBError, match=r"notes.txt: exists and is not a speaker database \(an empty file\)"):
            open_it()
    assert notes.read_bytes() == b"" and sorted(os.listdir(tmp_path)) == ["notes.txt"]
    with pytest.raises(SpeakerDBError, match="is a directory, not a speaker database"):
        SpeakerDB.model_of(tmp_path)


def test_a_new_database_leaves_no_temporary_file(path):
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("alice", [[1.0, 0.0]], ["a.wav"])
    assert sorted(os.listdir(path.parent)) == ["speakers.db"]


def test_a_database_another_process_created_meanwhile_is_used(path, monkeypatch):
    real_link = os.link

    def another_process_first(source, target):
        monkeypatch.setattr(os, "link", real_link)
        with SpeakerDB.open(target, MODEL) as other:
            other.enroll("first", [[1.0, 0.0]], ["f.wav"])
        real_link(source, target)  # FileExistsError: the other one is there

    monkeypatch.setattr(os, "link", another_process_first)
    with SpeakerDB.open(path, MODEL) as db:
        assert db.names() == ["first"]
    assert sorted(os.listdir(path.parent)) == ["speakers.db"]


def test_without_hard_links_a_new_database_is_copied_into_place(path, monkeypatch):
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with SpeakerDB.open(path, MODEL) as db:
        db.enroll("alice", [[1.0, 0.0]], ["a.wav"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and sorted(os.listdir(path.parent)) == ["speakers.db"]
    with SpeakerDB.open(path, MODEL, create=False) as db:
        assert db.names() == ["alice"]


def test_enroll_new_leaves_out_recordings_the_speaker_has(path):
    with SpeakerDB.open(path, MODEL) as db:
        first, repeated = db.enroll_new("alice", [[1.0, 0.0], [0.0, 1.0]], ["a.wav", "b.wav"])
        assert (first.count, repeated) == (2, {})
        # the same audio under another name (any scale: embeddings are compared normalised), and a new one
        second, repeated = db.enroll_new("alice", [[3.0, 0.0], [1.0, 1.0]], ["copy.wav", "c.wav"])
        assert (second.sources, repeated) == (["a.wav", "b.wav", "c.wav"], {0: "a.wav"})
        same, repeated = db.enroll_new("alice", [[0.0, 2.0]], ["b-again.wav"])  # nothing new
        assert repeated == {0: "b.wav"}
        assert (same.count, same.updated, same.sources) == (3, second.updated, second.sources)
        np.testing.assert_allclose(same.embedding, second.embedding)
        bob, repeated = db.enroll_new("bob", [[1.0, 0.0], [2.0, 0.0]], ["x.wav", "y.wav"])  # twice in one call
        assert (bob.sources, repeated) == (["x.wav"], {1: "x.wav"})
        again, repeated = db.enroll_new("alice", [[1.0, 0.0]], ["a.wav"], replace=True)
        assert (again.sources, repeated) == (["a.wav"], {})
        assert db.enroll("bob", [[1.0, 0.0]], ["x.wav"]).count == 2  # enroll itself stores what it is given
