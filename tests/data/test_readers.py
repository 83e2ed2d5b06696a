"""Corpus readers (VoxCeleb, Kaldi, folders), the durations cache and the Kaldi writer."""

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.data.corpus import Corpus, Utterance
from voxmetric.data.kaldi import write_kaldi_dir
from voxmetric.data.scan import ScanWarning, cache_file
from voxmetric.data.readers import (
    detect_format,
    read_corpus,
    read_kaldi_dir,
    read_speaker_folders,
    read_voxceleb,
)
from voxmetric.errors import ConfigError, CorpusError, TrialsError


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    """Keep fallback caches inside the test's folder, never in the real ~/.cache."""
    monkeypatch.setenv("VOXMETRIC_CACHE_DIR", str(tmp_path / "user-cache"))


def _tone(path: Path, duration_s: float, sample_rate_hz: int = 16_000) -> Path:
    """Write a short sine whose header says exactly ``duration_s``."""
    t = np.arange(int(round(duration_s * sample_rate_hz))) / sample_rate_hz
    audio.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sample_rate_hz)
    return path


def _count_header_reads(monkeypatch) -> list[str]:
    calls: list[str] = []
    real_info = audio.info

    def counting_info(path):
        calls.append(os.fspath(path))
        return real_info(path)

    monkeypatch.setattr(audio, "info", counting_info)
    return calls


@pytest.fixture
def folders(tmp_path) -> Path:
    """Two speakers; nested folders, three formats, two sample rates."""
    root = tmp_path / "folders"
    (root / "alice" / "day1").mkdir(parents=True)
    (root / "bob").mkdir(parents=True)
    _tone(root / "alice" / "day1" / "a1.wav", 0.5)
    _tone(root / "alice" / "a2.flac", 0.25, 8_000)
    _tone(root / "bob" / "b1.ogg", 0.75)
    return root


@pytest.fixture
def voxceleb(tmp_path) -> Path:
    root = tmp_path / "vox1"
    layout = {"id10001/vidA/00001.wav": 0.5, "id10001/vidA/00002.wav": 0.25, "id10002/vidB/00001.wav": 1.0}
    for uid, duration_s in layout.items():
        (root / "wav" / uid).parent.mkdir(parents=True, exist_ok=True)
        _tone(root / "wav" / uid, duration_s)
    return root


def _table(corpus: Corpus) -> list[tuple]:
    return [(u.uid, u.speaker, u.duration_s) for u in corpus]


# ---------------------------------------------------------------------------
# Readers


def test_speaker_folders_ids_speakers_and_exact_durations(folders):
    corpus = read_speaker_folders(folders)
    assert _table(corpus) == [
        ("alice/a2.flac", "alice", 0.25),
        ("alice/day1/a1.wav", "alice", 0.5),
        ("bob/b1.ogg", "bob", 0.75),
    ]
    assert corpus.root == str(folders)
    assert corpus.get("bob/b1.ogg").path == str(folders / "bob" / "b1.ogg")
    assert corpus.scan_report.ok


def test_speaker_folders_report_audio_without_speaker_folder(folders):
    _tone(folders / "loose.wav", 0.5)
    with pytest.warns(ScanWarning, match="loose.wav: not in the"):
        corpus = read_speaker_folders(folders)
    assert len(corpus) == 3


def test_voxceleb_ids_match_official_trial_lists(voxceleb):
    corpus = read_voxceleb(voxceleb)
    assert _table(corpus) == [
        ("id10001/vidA/00001.wav", "id10001", 0.5),
        ("id10001/vidA/00002.wav", "id10001", 0.25),
        ("id10002/vidB/00001.wav", "id10002", 1.0),
    ]
    assert corpus.root == str(voxceleb / "wav")
    # The wav folder itself is accepted too, with the same ids.
    assert _table(read_voxceleb(voxceleb / "wav")) == _table(corpus)


def test_voxceleb_reports_files_at_the_wrong_depth(voxceleb):
    _tone(voxceleb / "wav" / "id10003" / "flat.wav", 0.5)
    with pytest.warns(ScanWarning, match="flat.wav: not in the <speaker>/<video>/<utterance>"):
        corpus = read_voxceleb(voxceleb)
    assert "id10003" not in corpus.speakers


def test_voxceleb_m4a_is_counted_with_ffmpeg_hint(voxceleb, tmp_path):
    (voxceleb / "wav" / "id10002" / "vidB" / "00002.m4a").write_bytes(b"\0" * 64)
    with pytest.warns(ScanWarning, match="1 .m4a files.*ffmpeg"):
        corpus = read_voxceleb(voxceleb)
    assert corpus.scan_report.undecodable == {".m4a": 1}

    vox2 = tmp_path / "vox2" / "aac" / "id00012" / "vid"
    vox2.mkdir(parents=True)
    (vox2 / "00001.m4a").write_bytes(b"\0" * 64)
    with pytest.raises(CorpusError, match="(?s)no readable audio.*ffmpeg"):
        read_voxceleb(tmp_path / "vox2")


def _mp3(path: Path, duration_s: float) -> Path:
    """An MP3 tone (``audio.write`` writes only .wav, .flac and .ogg)."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(duration_s * 16_000))) / 16_000
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), 16_000, format="MP3")
    return path


def test_mp3_corpus_is_read_where_libsndfile_decodes_mp3(tmp_path):
    from voxmetric.audio.io import readable_extensions

    if ".mp3" not in readable_extensions():
        pytest.skip("this libsndfile (older than 1.1) has no MP3 decoder")
    for speaker in ("carol", "dave"):
        _mp3(tmp_path / "mp3" / speaker / "1.mp3", 1.0)
    _tone(tmp_path / "mp3" / "dave" / "2.wav", 0.5)
    corpus = read_speaker_folders(tmp_path / "mp3")
    assert corpus.speakers == ["carol", "dave"] and corpus.scan_report.ok
    assert corpus.get("carol/1.mp3").duration_s == pytest.approx(1.0, abs=0.05)
    assert [u.uid for u in corpus.by_speaker()["dave"]] == ["dave/1.mp3", "dave/2.wav"]


def test_mp3_is_counted_as_undecodable_where_libsndfile_cannot_decode_it(folders, monkeypatch):
    import soundfile

    (folders / "carol").mkdir()
    (folders / "carol" / "c1.mp3").write_bytes(b"ID3" + bytes(64))  # counted, never read
    formats = soundfile.available_formats()
    monkeypatch.setattr(soundfile, "available_formats", lambda: {k: v for k, v in formats.items() if k != "MP3"})
    with pytest.warns(ScanWarning, match="ignored 1 .mp3 files: .*older than 1.1.*ffmpeg -i in.mp3"):
        corpus = read_speaker_folders(folders)
    assert corpus.scan_report.undecodable == {".mp3": 1} and "carol" not in corpus.speakers


def test_empty_or_missing_directory_is_an_error(tmp_path):
    (tmp_path / "empty" / "spk").mkdir(parents=True)
    (tmp_path / "empty" / "spk" / "notes.txt").write_text("no audio here")
    with pytest.raises(CorpusError, match=f"{tmp_path / 'empty'}: no readable audio"):
        read_speaker_folders(tmp_path / "empty")
    with pytest.raises(CorpusError, match="no such directory"):
        read_corpus(tmp_path / "missing")


def test_read_corpus_detects_and_forces_formats(folders, voxceleb, tmp_path):
    kaldi_dir = write_kaldi_dir(read_speaker_folders(folders), tmp_path / "kaldi")
    assert [detect_format(p) for p in (kaldi_dir, voxceleb, folders)] == ["kaldi", "voxceleb", "folders"]
    assert len(read_corpus(voxceleb)) == 3
    assert read_corpus(kaldi_dir).root == str(kaldi_dir)
    # Forced: the VoxCeleb root read as speaker folders has the single speaker "wav".
    assert read_corpus(voxceleb, format="folders").speakers == ["wav"]
    with pytest.raises(ConfigError, match="'kaldy' is unknown; use one of auto, voxceleb, kaldi, folders"):
        read_corpus(voxceleb, format="kaldy")


# ---------------------------------------------------------------------------
# Kaldi directories


def _kaldi_dir(root: Path, **tables: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (root / name.replace("_", ".")).write_text(text)
    return root


def test_kaldi_dir_relative_and_absolute_paths_spk2utt_and_utt2dur(folders, tmp_path, monkeypatch):
    wav_scp = f"u1 ../folders/alice/day1/a1.wav\nu2 {folders / 'bob' / 'b1.ogg'}\n\n"
    data = _kaldi_dir(
        tmp_path / "data",
        wav_scp=wav_scp,
        utt2spk="u1 alice\nu2 bob\n",
        spk2utt="alice u1\nbob u2\n",
    )
    corpus = read_kaldi_dir(data)
    assert _table(corpus) == [("u1", "alice", 0.5), ("u2", "bob", 0.75)]
    assert corpus.get("u1").path == str(folders / "alice" / "day1" / "a1.wav")

    # With utt2dur, its durations are used and the audio is not opened.
    (data / "utt2dur").write_text("u1 0.5\nu2 9.25\n")
    calls = _count_header_reads(monkeypatch)
    assert read_kaldi_dir(data).get("u2").duration_s == 9.25
    assert calls == []


@pytest.mark.parametrize(
    "tables, message",
    [
        ({"wav_scp": "u1 a.wav\nu2\n", "utt2spk": "u1 s\n"}, r"wav\.scp:2: expected 'utt_id path'"),
        ({"wav_scp": "u1 a.wav\nu1 b.wav\n", "utt2spk": "u1 s\n"}, r"wav\.scp:2: utterance 'u1' already listed on line 1"),
        ({"wav_scp": "u1 a.wav\n", "utt2spk": "u1\n"}, r"utt2spk:1: expected 'utt_id speaker_id'"),
        ({"wav_scp": "u1 a.wav\n", "utt2spk": "u1 s\nu9 s\n"}, r"utt2spk:2: utterance 'u9' is not in wav\.scp"),
        ({"wav_scp": "u1 a.wav\nu2 a.wav\n", "utt2spk": "u1 s\n"}, r"utt2spk: utterance 'u2' \(wav\.scp line 2\) has no speaker"),
        ({"wav_scp": "u1 a.wav\n"}, r"utt2spk: no such file"),
        ({"wav_scp": "u1 a.wav\n", "utt2spk": "u1 s\n", "spk2utt": "t u1\n"}, r"spk2utt:1: utterance 'u1' listed under speaker 't'"),
        ({"wav_scp": "u1 a.wav\n", "utt2spk": "u1 s\n", "utt2dur": "u1 long\n"}, r"utt2dur:1: duration 'long' is not a number"),
        ({"wav_scp": "u1 my file.wav\n", "utt2spk": "u1 s\n"}, r"wav\.scp:1: .*whitespace in paths"),
        ({"wav_scp": "u1 raw.ark:42\n", "utt2spk": "u1 s\n"}, r"wav\.scp:1: .*Kaldi archive"),
    ],
)
def test_kaldi_malformed_tables_name_file_and_line(tmp_path, tables, message):
    data = _kaldi_dir(tmp_path / "data", **tables)
    with pytest.raises(CorpusError, match=message):
        read_kaldi_dir(data)


def test_kaldi_piped_wav_scp_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    data = _kaldi_dir(tmp_path / "data", wav_scp=f"u1 touch {marker} |\n", utt2spk="u1 s\n")
    with pytest.raises(CorpusError, match=r"wav\.scp:1: utterance 'u1' is a piped command"):
        read_kaldi_dir(data)
    assert not marker.exists()


def test_kaldi_round_trip_with_trials(folders, tmp_path):
    corpus = read_speaker_folders(folders)
    trials = [
        SimpleNamespace(label=1, enrol="alice/a2.flac", test="alice/day1/a1.wav"),
        SimpleNamespace(label=0, enrol="alice/a2.flac", test="bob/b1.ogg"),
    ]
    out = write_kaldi_dir(corpus, tmp_path / "out", trials=trials)
    again = read_kaldi_dir(out, strict=True)
    assert [(u.uid, u.path, u.speaker, u.duration_s) for u in again] == [
        (u.uid, u.path, u.speaker, u.duration_s) for u in corpus
    ]
    assert (Path(out) / "spk2utt").read_text() == "alice alice/a2.flac alice/day1/a1.wav\nbob bob/b1.ogg\n"
    assert (Path(out) / "trials").read_text() == (
        "alice/a2.flac alice/day1/a1.wav target\nalice/a2.flac bob/b1.ogg nontarget\n"
    )


def test_kaldi_writer_refuses_whitespace_and_unknown_trial_ids(tmp_path):
    spaced = Corpus([Utterance("u1", "/data/my file.wav", "s", 1.0)])
    with pytest.raises(CorpusError, match="path of utterance 'u1' .* contains whitespace"):
        write_kaldi_dir(spaced, tmp_path / "a")
    plain = Corpus([Utterance("u1", "/data/file.wav", "s", 1.0)])
    with pytest.raises(TrialsError, match="utterance 'u7' is not in the corpus"):
        write_kaldi_dir(plain, tmp_path / "b", trials=[SimpleNamespace(label=1, enrol="u1", test="u7")])
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------
# Durations cache


def test_second_scan_reads_no_headers_and_changed_files_are_reread(folders, monkeypatch, capsys):
    calls = _count_header_reads(monkeypatch)
    read_speaker_folders(folders, progress=True)
    assert len(calls) == 3
    assert "reading audio headers" in capsys.readouterr().err
    assert cache_file(str(folders)) == str(folders / ".voxmetric" / "durations.tsv")

    calls.clear()
    assert read_speaker_folders(folders).scan_report.header_reads == 0
    assert calls == []

    _tone(folders / "bob" / "b1.ogg", 1.5)
    corpus = read_speaker_folders(folders)
    assert calls == [str(folders / "bob" / "b1.ogg")]
    assert corpus.get("bob/b1.ogg").duration_s == 1.5


def test_read_only_root_caches_under_voxmetric_cache_dir(folders, tmp_path):
    os.chmod(folders, stat.S_IRUSR | stat.S_IXUSR)
    try:
        read_speaker_folders(folders)
        assert read_speaker_folders(folders).scan_report.header_reads == 0
        assert cache_file(str(folders)).startswith(str(tmp_path / "user-cache"))
    finally:
        os.chmod(folders, stat.S_IRWXU)
    assert not (folders / ".voxmetric").exists()
    assert len(list((tmp_path / "user-cache").glob("*/durations.tsv"))) == 1


# ---------------------------------------------------------------------------
# Bad files


@pytest.fixture
def with_bad_files(folders) -> Path:
    (folders / "alice" / "empty.wav").write_bytes(b"")
    (folders / "bob" / "corrupt.flac").write_bytes(b"not audio at all" * 8)
    audio.write(folders / "bob" / "silent.wav", np.zeros(0, np.float32))
    return folders


def test_bad_files_are_reported_once_and_skipped(with_bad_files, monkeypatch):
    with pytest.warns(ScanWarning, match="left out 3 files") as caught:
        corpus = read_speaker_folders(with_bad_files)
    assert len(caught) == 1
    assert len(corpus) == 3
    reasons = dict(corpus.scan_report.bad)
    assert "empty file" in reasons[str(with_bad_files / "alice" / "empty.wav")]
    assert "corrupt" in reasons[str(with_bad_files / "bob" / "corrupt.flac")]
    assert "zero-length" in reasons[str(with_bad_files / "bob" / "silent.wav")]
    # Bad files are not cached: once repaired they are read.
    with pytest.warns(ScanWarning):
        assert read_speaker_folders(with_bad_files).scan_report.header_reads == 3


def test_strict_raises_listing_bad_files(with_bad_files):
    with pytest.raises(CorpusError) as caught:
        read_corpus(with_bad_files, strict=True)
    message = str(caught.value)
    assert message.startswith(f"{with_bad_files}: 3 file(s) cannot be used, e.g. {with_bad_files}") and "\n" not in message
    assert message.endswith("(data.strict is true: fix or remove them, or leave them out with strict false)")


def test_kaldi_missing_audio_is_a_bad_file(folders, tmp_path):
    data = _kaldi_dir(
        tmp_path / "data",
        wav_scp=f"u1 {folders / 'bob' / 'b1.ogg'}\nu2 gone.wav\n",
        utt2spk="u1 bob\nu2 bob\n",
    )
    with pytest.warns(ScanWarning, match="gone.wav: no such file"):
        assert [u.uid for u in read_kaldi_dir(data)] == ["u1"]
    with pytest.raises(CorpusError, match="gone.wav: no such file"):
        read_kaldi_dir(data, strict=True)


# ---------------------------------------------------------------------------
# Real speech


def test_real_speech_as_speaker_folders(shared_data):
    root = shared_data / "real"
    corpus = read_corpus(root)
    assert len(corpus.speakers) == 9
    assert len(corpus) == 79
    assert corpus.total_duration_s == pytest.approx(480.5, abs=0.2)
    assert "ls-1998/1998-15444-0001.flac" in corpus
    # The folder is read-only (to its owner's intent, even for root): cache went to the user dir.
    assert not (root / ".voxmetric").exists()
    assert read_corpus(root).scan_report.header_reads == 0
    assert cache_file(str(root)).startswith(os.environ["VOXMETRIC_CACHE_DIR"])


def test_a_corpus_read_in_the_wrong_layout_is_one_line_with_the_fix(tmp_path):
    for speaker in ("ann", "bob"):  # one folder per speaker, files directly inside
        audio.write(tmp_path / "flat" / speaker / "a.wav", np.full(1600, 0.1, np.float32))
    with pytest.raises(CorpusError) as caught:
        read_corpus(tmp_path / "flat", "voxceleb")
    message = str(caught.value)
    assert "\n" not in message and "no readable audio files (" in message
    assert "not in the <speaker>/<video>/<utterance> VoxCeleb layout" in message
    assert message.endswith("another data.format (auto, voxceleb, kaldi, folders) may fit this folder")
