"""Kaldi-style data directories: parsing the tables and writing a corpus as one.

A Kaldi data directory (also read by WeSpeaker and ESPnet) holds text tables,
one record a line, fields separated by whitespace:

    wav.scp   utt_id path            (path absolute, or relative to the current directory)
    utt2spk   utt_id speaker_id
    spk2utt   speaker_id utt_id ...  (optional; the inverse of utt2spk)
    utt2dur   utt_id duration_in_seconds   (optional)
    trials    utt_id utt_id target|nontarget

Utterance ids are written as they are (``id10270/5r0dWxy17C8/00001.wav`` is a
valid Kaldi id: it only must not hold whitespace), so a trial list written here
uses the same ids as the official VoxCeleb lists and reading the directory back
gives the same table. Kaldi also expects each speaker id to be a prefix of its
utterance ids (so that sorting by either gives the same order); the VoxCeleb and
folder-per-speaker ids have that property.

Reading a whole directory into a :class:`~voxmetric.data.corpus.Corpus` (which
may read audio headers for durations) is :func:`voxmetric.data.readers.read_kaldi_dir`;
this module parses and writes text, and resolves ``wav.scp`` paths
(:func:`resolve_wav_path`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator

from ..errors import CorpusError, TrialsError
from ..fileio import atomic_open
from .corpus import Corpus

# `foo.ark:1234` points into a Kaldi archive, not at an audio file.
_ARK_OFFSET = re.compile(r"\.ark:\d+(\[[^\]]*\])?$")


def _records(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of each non-blank line of ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if fields:
                    yield lineno, fields
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _check_rxfile(path: str, lineno: int, uid: str, rxfile: str) -> None:
    """Reject wav.scp entries that are not plain audio file paths."""
    where = f"{path}:{lineno}: utterance '{uid}'"
    if rxfile.endswith("|") or rxfile.startswith("|"):
        # Running commands found in a data file would execute whatever it holds.
        raise CorpusError(
            f"{where} is a piped command ('{rxfile}'); voxmetric never runs commands from "
            f"wav.scp: run it once to write an audio file and list that file instead"
        )
    if rxfile == "-":
        raise CorpusError(f"{where} reads standard input ('-'); list an audio file instead")
    if _ARK_OFFSET.search(rxfile):
        raise CorpusError(f"{where} points into a Kaldi archive ('{rxfile}'); list an audio file instead")
    if len(rxfile.split()) > 1:
        raise CorpusError(
            f"{where}: expected 'utt_id path', got {len(rxfile.split()) + 1} fields; "
            f"Kaldi does not support whitespace in paths"
        )


def read_wav_scp(path: str) -> dict[str, tuple[str, int]]:
    """Parse ``wav.scp``: utterance id -> (path as written, line number).

    Raises:
        CorpusError: missing file, a line with one field, a duplicate id, or an
            entry that is a piped command, stdin or an archive offset.
    """
    table: dict[str, tuple[str, int]] = {}
    for lineno, fields in _records(path):
        if len(fields) < 2:
            raise CorpusError(f"{path}:{lineno}: expected 'utt_id path', got '{fields[0]}' alone")
        uid = fields[0]
        rxfile = " ".join(fields[1:])
        _check_rxfile(path, lineno, uid, rxfile)
        if uid in table:
            raise CorpusError(f"{path}:{lineno}: utterance '{uid}' already listed on line {table[uid][1]}")
        table[uid] = (rxfile, lineno)
    return table


_said_data_dir_relative: set[str] = set()


def resolve_wav_path(written: str, data_dir: str | os.PathLike) -> str:
    """The file a ``wav.scp`` path names, resolved as Kaldi, kaldiio and lhotse resolve it.

    A relative path is relative to the current directory (recipes run from the folder
    above ``data/``: ``s5/data/train/wav.scp`` holds ``wav/x.wav`` for ``s5/wav/x.wav``).
    Where no such file exists but one does relative to the data directory (how earlier
    voxmetric versions read it), that one is used and the fact said once per data directory
    on stderr.
    """
    if os.path.isabs(written):
        return os.path.normpath(written)
    from_cwd = os.path.abspath(written)
    if os.path.exists(from_cwd):
        return from_cwd
    from_dir = os.path.normpath(os.path.join(os.path.abspath(data_dir), written))
    if os.path.exists(from_dir):
        key = os.path.abspath(data_dir)
        if key not in _said_data_dir_relative:
            _said_data_dir_relative.add(key)
            print(f"note: {os.path.join(data_dir, 'wav.scp')}: relative paths are not found from the current "
                  f"directory ({os.getcwd()}); reading them relative to {data_dir} instead", file=sys.stderr)
        return from_dir
    return from_cwd


def read_utt2spk(path: str, known: dict[str, tuple[str, int]]) -> dict[str, str]:
    """Parse ``utt2spk``: utterance id -> speaker id.

    Args:
        path: the utt2spk file.
        known: the ``wav.scp`` table (:func:`read_wav_scp`); every utterance in
            utt2spk must be in it and every utterance in it needs a speaker.

    Raises:
        CorpusError: malformed line, duplicate or unknown utterance, or an
            utterance of wav.scp without a speaker.
    """
    utt2spk: dict[str, str] = {}
    lines: dict[str, int] = {}
    for lineno, fields in _records(path):
        if len(fields) != 2:
            raise CorpusError(f"{path}:{lineno}: expected 'utt_id speaker_id', got {len(fields)} fields")
        uid, speaker = fields
        if uid not in known:
            raise CorpusError(f"{path}:{lineno}: utterance '{uid}' is not in wav.scp")
        if uid in utt2spk:
            raise CorpusError(f"{path}:{lineno}: utterance '{uid}' already listed on line {lines[uid]}")
        utt2spk[uid], lines[uid] = speaker, lineno
    for uid, (_, lineno) in known.items():
        if uid not in utt2spk:
            raise CorpusError(f"{path}: utterance '{uid}' (wav.scp line {lineno}) has no speaker")
    return utt2spk


def check_spk2utt(path: str, utt2spk: dict[str, str]) -> None:
    """Check that ``spk2utt`` is the exact inverse of ``utt2spk``.

    Raises:
        CorpusError: naming the first line that disagrees, or an utterance
            missing from spk2utt.
    """
    seen: set[str] = set()
    for lineno, fields in _records(path):
        speaker, uids = fields[0], fields[1:]
        if not uids:
            raise CorpusError(f"{path}:{lineno}: speaker '{speaker}' lists no utterances")
        for uid in uids:
            if utt2spk.get(uid) != speaker:
                actual = f"speaker '{utt2spk[uid]}'" if uid in utt2spk else "no entry"
                raise CorpusError(
                    f"{path}:{lineno}: utterance '{uid}' listed under speaker '{speaker}' "
                    f"but utt2spk has {actual}"
                )
            seen.add(uid)
    missing = [uid for uid in utt2spk if uid not in seen]
    if missing:
        raise CorpusError(f"{path}: {len(missing)} utterances of utt2spk are missing, e.g. '{missing[0]}'")


def read_utt2dur(path: str) -> dict[str, float]:
    """Parse ``utt2dur``: utterance id -> duration in seconds.

    Raises:
        CorpusError: malformed line or a duration that is not a positive number.
    """
    durations: dict[str, float] = {}
    for lineno, fields in _records(path):
        if len(fields) != 2:
            raise CorpusError(f"{path}:{lineno}: expected 'utt_id duration', got {len(fields)} fields")
        try:
            duration_s = float(fields[1])
        except ValueError:
            raise CorpusError(f"{path}:{lineno}: duration '{fields[1]}' is not a number") from None
        if not duration_s > 0 or duration_s == float("inf"):
            raise CorpusError(f"{path}:{lineno}: duration {fields[1]} must be a positive number of seconds")
        durations[fields[0]] = duration_s
    return durations


def read_tables(data_dir: str) -> tuple[dict[str, tuple[str, int]], dict[str, str], dict[str, float]]:
    """Parse the tables of a Kaldi data directory and check them against each other.

    Returns:
        (:func:`read_wav_scp` table, utt2spk, utt2dur or ``{}`` without that file).

    Raises:
        CorpusError: see the parsers; also a ``segments`` file, which is not supported.
    """
    path = {name: os.path.join(data_dir, name) for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur", "segments")}
    if os.path.exists(path["segments"]):
        raise CorpusError(
            f"{path['segments']}: segments files are not supported; "
            f"cut the recordings into one audio file per utterance first"
        )
    wav_scp = read_wav_scp(path["wav.scp"])
    utt2spk = read_utt2spk(path["utt2spk"], wav_scp)
    if os.path.exists(path["spk2utt"]):
        check_spk2utt(path["spk2utt"], utt2spk)
    durations = read_utt2dur(path["utt2dur"]) if os.path.exists(path["utt2dur"]) else {}
    return wav_scp, utt2spk, durations


def _check_no_whitespace(value: str, what: str) -> None:
    if not value or len(value.split()) != 1 or value != value.strip():
        raise CorpusError(f"{what} '{value}' contains whitespace, which Kaldi tables cannot hold; rename it")


def _trial_lines(trials: Iterable, corpus: Corpus) -> list[str]:
    """``enrol test target|nontarget`` lines from objects with ``label``, ``enrol``, ``test``."""
    lines = []
    for i, trial in enumerate(trials):
        for uid in (trial.enrol, trial.test):
            if uid not in corpus:
                raise TrialsError(f"trial {i} ({trial.enrol} {trial.test}): utterance '{uid}' is not in the corpus")
        if trial.label not in (0, 1):  # also admits True/False
            raise TrialsError(f"trial {i} ({trial.enrol} {trial.test}): label {trial.label!r} must be 1 or 0")
        lines.append(f"{trial.enrol} {trial.test} {'target' if trial.label else 'nontarget'}\n")
    return lines


def write_kaldi_dir(corpus: Corpus, out_dir: str | os.PathLike, trials: Iterable | None = None) -> str:
    """Write ``corpus`` as a Kaldi data directory; return its path.

    Writes ``wav.scp`` (absolute paths), ``utt2spk``, ``spk2utt``, ``utt2dur``
    and, if ``trials`` is given, ``trials``. Tables are sorted by id (byte
    order, as Kaldi's ``LC_ALL=C sort``); each file is written atomically.
    Other files already in ``out_dir`` are left as they are.

    Args:
        corpus: the utterances to write; ids are kept as they are.
        out_dir: directory to write (created if missing).
        trials: objects with ``enrol`` and ``test`` (utterance ids of
            ``corpus``) and ``label`` (1 target, 0 non-target), e.g.
            :class:`voxmetric.data.trials.Trial`.

    Raises:
        CorpusError: an id, speaker or path holds whitespace.
        TrialsError: a trial names an utterance not in ``corpus`` or has a bad label.
    """
    out_dir = os.fspath(out_dir)
    utterances = sorted(corpus, key=lambda u: u.uid)
    for u in utterances:
        _check_no_whitespace(u.uid, "utterance id")
        _check_no_whitespace(u.speaker, f"speaker of utterance '{u.uid}'")
        _check_no_whitespace(u.path, f"path of utterance '{u.uid}'")
    trial_lines = None if trials is None else _trial_lines(trials, corpus)
    tables = {
        "wav.scp": [f"{u.uid} {os.path.abspath(u.path)}\n" for u in utterances],
        "utt2spk": [f"{u.uid} {u.speaker}\n" for u in utterances],
        # repr() is the shortest text that reads back as the same float.
        "utt2dur": [f"{u.uid} {u.duration_s!r}\n" for u in utterances],
        "spk2utt": [
            f"{speaker} {' '.join(sorted(x.uid for x in group))}\n"
            for speaker, group in sorted(corpus.by_speaker().items())
        ],
    }
    if trial_lines is not None:
        tables["trials"] = trial_lines
    os.makedirs(out_dir, exist_ok=True)
    for name, lines in tables.items():
        with atomic_open(os.path.join(out_dir, name)) as f:
            f.writelines(lines)
    return out_dir

