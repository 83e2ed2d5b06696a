"""Corpus readers for the usual on-disk layouts.

* :func:`read_voxceleb`: ``ROOT/wav/<speaker>/<video>/<utt>.wav``
* :func:`read_kaldi_dir`: ``wav.scp`` + ``utt2spk`` (+ ``spk2utt``, ``utt2dur``)
* :func:`read_speaker_folders`: ``ROOT/<speaker>/**/*.{wav,flac,ogg,mp3}``
* :func:`read_corpus`: any of them, detected from the directory

Durations come from audio headers (nothing is decoded) and are cached
(:mod:`voxmetric.data.scan`), so a corpus of a million files is scanned once.

Files that cannot be used (empty, corrupt, zero-length, unsupported, outside the
layout) are left out and reported once, in one warning, and kept in the
:class:`ScanReport` set as ``corpus.scan_report`` on the returned corpus;
``strict=True`` raises :class:`~voxmetric.errors.CorpusError` instead.

VoxCeleb2 ships AAC audio in ``.m4a`` files, which libsndfile cannot decode.
Convert them once with ffmpeg (``ffmpeg -i in.m4a -ac 1 -ar 16000 out.flac``)
and read the converted tree.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

from ..audio.io import readable_extensions
from ..errors import ConfigError, CorpusError
from . import kaldi
from .corpus import Corpus, Utterance
from .scan import ScanReport, ScanWarning, _FileStat, _stat_files, _walk_audio, scan_headers

FORMATS = ("auto", "voxceleb", "kaldi", "folders")
"""Values of the ``format`` argument of :func:`read_corpus`."""

# ---------------------------------------------------------------------------
# Readers


def _existing_dir(path: str | os.PathLike) -> str:
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise CorpusError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise CorpusError(f"{path}: not a directory (a corpus is read from a directory)")
    return path


def _finish(utterances: list[Utterance], root: str, report: ScanReport, strict: bool) -> Corpus:
    """The corpus, after raising or warning about what the scan left out."""
    if strict and report.bad:
        path, reason = report.bad[0]
        raise CorpusError(f"{root}: {len(report.bad)} file(s) cannot be used, e.g. {path}: {reason} "
                          f"(data.strict is true: fix or remove them, or leave them out with strict false)")
    if not utterances:
        raise CorpusError(f"{root}: no readable audio files ({', '.join(readable_extensions())}) found"
                          + _why_none(report))
    if not report.ok:
        warnings.warn(report.summary(), ScanWarning, stacklevel=3)
    corpus = Corpus(utterances, root)
    corpus.scan_report = report
    return corpus


def _why_none(report: ScanReport) -> str:
    """What a scan that found nothing left out, for a one-line error: the first file and why,
    and for files outside the asked layout the ``data.format`` that may fit."""
    parts = []
    if report.bad:
        path, reason = report.bad[0]
        parts.append(f"{len(report.bad)} file(s) left out, e.g. {path}: {reason}")
        if "layout" in reason:
            parts.append(f"another data.format ({', '.join(FORMATS)}) may fit this folder")
    if report.undecodable:
        counts = ", ".join(f"{n} {ext}" for ext, n in sorted(report.undecodable.items()))
        parts.append(f"{counts} file(s) this libsndfile cannot decode: convert them with ffmpeg "
                     f"(README, 'Audio formats')")
    return "; " + "; ".join(parts) if parts else ""


def _scan_tree(
    root: str, speaker_of: Callable[[list[str]], str | None], layout: str, progress: bool | None
) -> tuple[list[Utterance], ScanReport]:
    """Utterances under ``root``; ``speaker_of(uid parts)`` is the speaker, or None outside ``layout``."""
    report = ScanReport(root)
    placed: list[tuple[_FileStat, str, str]] = []
    for stat in _walk_audio(root, report):
        uid = os.path.relpath(stat[0], root).replace(os.sep, "/")
        speaker = speaker_of(uid.split("/"))
        if speaker is None:
            report.bad.append((stat[0], f"not in the {layout} layout"))
        else:
            placed.append((stat, uid, speaker))
    headers = scan_headers([p[0] for p in placed], root, report, progress)
    utterances = [
        Utterance(uid, stat[0], speaker, headers[stat[0]].duration_s)
        for stat, uid, speaker in placed
        if stat[0] in headers
    ]
    return utterances, report


def _voxceleb_speaker(parts: list[str]) -> str | None:
    return parts[0] if len(parts) == 3 else None


def _folder_speaker(parts: list[str]) -> str | None:
    return parts[0] if len(parts) >= 2 else None


def _voxceleb_wav_root(root: str) -> str:
    for name in ("wav", "aac"):  # VoxCeleb1; VoxCeleb2 after converting its .m4a in place
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return root


def read_voxceleb(root: str | os.PathLike, *, strict: bool = False, progress: bool | None = None) -> Corpus:
    """Read ``ROOT/wav/<speaker>/<video>/<utt>.{wav,flac,ogg}`` (ROOT may be ``wav`` itself).

    Utterance ids are paths relative to the ``wav`` root, with ``/`` and the
    file ending, as in the official trial lists: ``id10270/5r0dWxy17C8/00001.wav``.
    ``.m4a`` files (VoxCeleb2 ``aac/``) are counted and reported, not read.

    Returns:
        corpus sorted by id, ``corpus.root`` the absolute ``wav`` root and
        ``corpus.scan_report`` a :class:`ScanReport`.

    Raises:
        CorpusError: missing folder, no readable audio, or (``strict``) any file left out.
    """
    wav_root = _voxceleb_wav_root(_existing_dir(root))
    layout = "<speaker>/<video>/<utterance> VoxCeleb"
    utterances, report = _scan_tree(wav_root, _voxceleb_speaker, layout, progress)
    return _finish(utterances, wav_root, report, strict)


def read_speaker_folders(root: str | os.PathLike, *, strict: bool = False, progress: bool | None = None) -> Corpus:
    """Read ``ROOT/<speaker>/**/*.{wav,flac,ogg,mp3}``: one folder per speaker, any depth below.

    Utterance ids are paths relative to ``ROOT`` with ``/`` (``spk1/a/001.flac``);
    audio directly in ``ROOT`` has no speaker and is reported, not read.

    Returns:
        corpus sorted by id, ``corpus.root`` the absolute ``ROOT`` and
        ``corpus.scan_report`` a :class:`ScanReport`.

    Raises:
        CorpusError: missing folder, no readable audio, or (``strict``) any file left out.
    """
    root = _existing_dir(root)
    layout = "<speaker>/.../<utterance> folder-per-speaker"
    utterances, report = _scan_tree(root, _folder_speaker, layout, progress)
    return _finish(utterances, root, report, strict)


def read_kaldi_dir(data_dir: str | os.PathLike, *, strict: bool = False, progress: bool | None = None) -> Corpus:
    """Read a Kaldi data directory: ``wav.scp``, ``utt2spk``, optional ``spk2utt`` and ``utt2dur``.

    Paths in ``wav.scp`` are absolute or relative to ``data_dir``; piped
    commands are refused, never run. ``spk2utt``, if present, must agree with
    ``utt2spk``. Durations come from ``utt2dur`` where it lists an utterance
    (those files are not opened), otherwise from the audio headers.

    Returns:
        corpus in ``wav.scp`` order with its ids, ``corpus.root`` the absolute
        ``data_dir`` and ``corpus.scan_report`` a :class:`ScanReport`.

    Raises:
        CorpusError: missing table, malformed line (with its line number),
            unknown utterance or one without speaker, a ``segments`` file
            (not supported), no readable audio, or (``strict``) any file left out.
    """
    data_dir = _existing_dir(data_dir)
    wav_scp, utt2spk, durations = kaldi.read_tables(data_dir)
    paths = {uid: kaldi.resolve_wav_path(rxfile, data_dir) for uid, (rxfile, _) in wav_scp.items()}
    report = ScanReport(data_dir)
    unmeasured = sorted({paths[uid] for uid in wav_scp if uid not in durations})
    headers = scan_headers(_stat_files(unmeasured, report), data_dir, report, progress)
    for uid, path in paths.items():
        if uid not in durations and path in headers:
            durations[uid] = headers[path].duration_s
    utterances = [Utterance(uid, paths[uid], utt2spk[uid], durations[uid]) for uid in wav_scp if uid in durations]
    return _finish(utterances, data_dir, report, strict)


def detect_format(path: str | os.PathLike) -> str:
    """The layout of corpus directory ``path``.

    ``"kaldi"`` if it holds ``wav.scp``, ``"voxceleb"`` if it holds ``wav/``
    (or ``aac/``), else ``"folders"``.
    """
    root = _existing_dir(path)
    if os.path.isfile(os.path.join(root, "wav.scp")):
        return "kaldi"
    if any(os.path.isdir(os.path.join(root, name)) for name in ("wav", "aac")):
        return "voxceleb"
    return "folders"


_READERS = {"voxceleb": read_voxceleb, "kaldi": read_kaldi_dir, "folders": read_speaker_folders}


def read_corpus(
    path: str | os.PathLike, format: str = "auto", *, strict: bool = False, progress: bool | None = None
) -> Corpus:
    """Read a corpus in any supported layout.

    Args:
        path: corpus directory.
        format: one of :data:`FORMATS`; ``"auto"`` uses :func:`detect_format`.
        strict: raise instead of leaving out files that cannot be used.
        progress: progress bar for header reads; ``None`` shows one for long scans on a terminal.

    Raises:
        ConfigError: unknown ``format``.
        CorpusError: see the reader of the format.
    """
    if format not in FORMATS:
        raise ConfigError(f"corpus format '{format}' is unknown; use one of {', '.join(FORMATS)}")
    if format == "auto":
        format = detect_format(path)
    return _READERS[format](path, strict=strict, progress=progress)
