"""Corpus readers for the on-disk layouts of SPEC section 3.

* :func:`read_voxceleb`: ``ROOT/wav/<speaker>/<video>/<utt>.wav``
* :func:`read_kaldi_dir`: ``wav.scp`` + ``utt2spk`` (+ ``spk2utt``, ``utt2dur``)
* :func:`read_speaker_folders`: ``ROOT/<speaker>/**/*.{wav,flac,ogg}``
* :func:`read_corpus`: any of them, detected from the directory

Durations come from audio headers (nothing is decoded) and are cached in a
``durations.tsv`` file keyed by (relative path, size, modification time), so a
corpus of a million files is scanned once; see :func:`cache_file`.

Files that cannot be used (empty, corrupt, zero-length, unsupported, outside the
layout) are left out and reported once, in one warning, and kept in the
:class:`ScanReport` set as ``corpus.scan_report`` on the returned corpus;
``strict=True`` raises :class:`~voxmetric.errors.CorpusError` instead.

VoxCeleb2 ships AAC audio in ``.m4a`` files, which libsndfile cannot decode.
Convert them once with ffmpeg (``ffmpeg -i in.m4a -ac 1 -ar 16000 out.flac``)
and read the converted tree.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from .. import audio
from ..errors import AudioError, ConfigError, CorpusError
from ..fileio import atomic_open
from . import kaldi
from .corpus import Corpus, Utterance

FORMATS = ("auto", "voxceleb", "kaldi", "folders")
"""Values of the ``format`` argument of :func:`read_corpus`."""

UNDECODABLE_EXTENSIONS = (".m4a", ".aac")
"""Audio that libsndfile cannot decode: counted during scans, never read."""

FFMPEG_HINT = (
    "libsndfile cannot decode AAC (.m4a, as shipped with VoxCeleb2); convert the files once "
    "with ffmpeg, e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 out.flac`, and read the converted tree"
)

_CACHE_HEADER = "# voxmetric durations cache v1\npath\tsize_bytes\tmtime_ns\tduration_s\tsample_rate_hz\tchannels\n"
_PROGRESS_MIN_FILES = 1000
_HEADER_THREADS = 16  # header reads wait on the disk (or network file system), not the CPU

_FileStat = tuple[str, int, int]  # (absolute path, size in bytes, mtime in ns)


class ScanWarning(UserWarning):
    """Some files of a corpus were left out (see ``corpus.scan_report``)."""


@dataclass(frozen=True)
class FileHeader:
    """What a scan keeps from an audio header."""

    duration_s: float
    sample_rate_hz: int
    channels: int


@dataclass
class ScanReport:
    """Files a reader left out, and how much work the scan did.

    Attributes:
        root: the corpus directory.
        bad: (path, reason) of each file left out.
        undecodable: file ending -> count of files libsndfile cannot decode (.m4a).
        header_reads: headers read from disk, i.e. not found in the cache.
    """

    root: str
    bad: list[tuple[str, str]] = field(default_factory=list)
    undecodable: Counter = field(default_factory=Counter)
    header_reads: int = 0

    @property
    def ok(self) -> bool:
        return not self.bad and not self.undecodable

    def summary(self, max_items: int = 5) -> str:
        """A few lines for people: counts, the first ``max_items`` bad files and why."""
        lines = []
        if self.bad:
            lines.append(f"{self.root}: left out {len(self.bad)} files that cannot be used:")
            lines += [f"  {path}: {reason}" for path, reason in self.bad[:max_items]]
            if len(self.bad) > max_items:
                lines.append(f"  ... and {len(self.bad) - max_items} more (see corpus.scan_report.bad)")
        if self.undecodable:
            counts = ", ".join(f"{n} {ext}" for ext, n in sorted(self.undecodable.items()))
            lines.append(f"{self.root}: ignored {counts} files: {FFMPEG_HINT}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Durations cache


def _writable_dir(path: str) -> bool:
    # os.access says yes to the superuser even for a folder its owner made
    # read-only (shared data sets); respect the mode bits as well.
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(mode & 0o222)


def cache_file(root: str) -> str:
    """Path of the durations cache of the corpus directory ``root``.

    ``ROOT/.voxmetric/durations.tsv`` where ``ROOT`` is writable, otherwise
    ``BASE/<sha1 of the absolute root>/durations.tsv`` with ``BASE`` taken from
    ``$VOXMETRIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/voxmetric``, else
    ``~/.cache/voxmetric``.
    """
    root = os.path.abspath(root)
    local = os.path.join(root, ".voxmetric")
    if _writable_dir(local) or (not os.path.exists(local) and _writable_dir(root)):
        return os.path.join(local, "durations.tsv")
    base = os.environ.get("VOXMETRIC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "voxmetric"
    )
    digest = hashlib.sha1(root.encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(base, digest, "durations.tsv")


def _load_cache(path: str) -> dict[str, tuple[int, int, FileHeader]]:
    """Relative path -> (size, mtime_ns, header); empty if the file is missing or foreign."""
    entries: dict[str, tuple[int, int, FileHeader]] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            if f.read(len(_CACHE_HEADER)) != _CACHE_HEADER:
                return entries  # another version: rebuild rather than misread
            for line in f:
                fields = line.rstrip("\n").split("\t")
                try:
                    size, mtime_ns, sr, channels = int(fields[1]), int(fields[2]), int(fields[4]), int(fields[5])
                    entries[fields[0]] = (size, mtime_ns, FileHeader(float(fields[3]), sr, channels))
                except (IndexError, ValueError):
                    continue  # a damaged line only costs one header read
    except OSError:
        pass
    return entries


def _save_cache(path: str, entries: dict[str, tuple[int, int, FileHeader]]) -> None:
    try:
        with atomic_open(path, encoding="utf-8") as f:
            f.write(_CACHE_HEADER)
            for key, (size, mtime_ns, h) in sorted(entries.items()):
                # repr() of a float reads back as the same float: cached durations are exact.
                f.write(f"{key}\t{size}\t{mtime_ns}\t{h.duration_s!r}\t{h.sample_rate_hz}\t{h.channels}\n")
    except (OSError, UnicodeEncodeError) as error:
        # The cache only saves time; a corpus on a read-only disk still reads.
        warnings.warn(f"{path}: cannot write the durations cache ({error})", ScanWarning, stacklevel=2)


def _cache_key(path: str, root: str) -> str | None:
    key = os.path.relpath(path, root).replace(os.sep, "/")
    return None if "\t" in key or "\n" in key else key


# ---------------------------------------------------------------------------
# Scanning


def _read_header(path: str) -> tuple[FileHeader | None, str | None]:
    """(header, None), or (None, reason) for a file that cannot be used."""
    try:
        info = audio.info(path)
    except (AudioError, OSError) as error:
        reason = str(error)
        return None, reason[len(path) + 2 :] if reason.startswith(f"{path}: ") else reason
    return FileHeader(info.duration_s, info.sample_rate_hz, info.channels), None


def _read_headers(paths: list[str], progress: bool | None) -> list[tuple[FileHeader | None, str | None]]:
    """:func:`_read_header` of each path, in order, on a thread pool."""
    if not paths:
        return []
    # None: a bar only for long scans, and only on a terminal (tqdm's disable=None).
    disable = (None if len(paths) >= _PROGRESS_MIN_FILES else True) if progress is None else not progress
    with ThreadPoolExecutor(max_workers=min(_HEADER_THREADS, len(paths))) as pool:
        results = pool.map(_read_header, paths)
        bar = tqdm(results, total=len(paths), desc="reading audio headers", unit="file", disable=disable)
        return list(bar)


def scan_headers(
    files: list[_FileStat], root: str, report: ScanReport, progress: bool | None = None
) -> dict[str, FileHeader]:
    """Headers of ``files``, from the cache of ``root`` where size and mtime still match.

    Args:
        files: (absolute path, size in bytes, mtime in ns) of each file.
        root: corpus directory; selects the cache (:func:`cache_file`).
        report: receives each file that cannot be read, with the reason.
        progress: show a progress bar; ``None`` shows one for long scans on a terminal.

    Returns:
        absolute path -> header, for the readable files.
    """
    path = cache_file(root)
    cache = _load_cache(path)
    headers: dict[str, FileHeader] = {}
    misses: list[tuple[_FileStat, str | None]] = []
    for stat in files:
        key = _cache_key(stat[0], root)
        hit = cache.get(key) if key is not None else None
        if hit is not None and hit[:2] == stat[1:]:
            headers[stat[0]] = hit[2]
        else:
            misses.append((stat, key))
    report.header_reads += len(misses)
    results = _read_headers([stat[0] for stat, _ in misses], progress)
    for ((file, size, mtime_ns), key), (header, reason) in zip(misses, results):
        if header is None:
            report.bad.append((file, reason))  # not cached: a repaired file is picked up next time
            continue
        headers[file] = header
        if key is not None:
            cache[key] = (size, mtime_ns, header)
    if len(headers) > len(files) - len(misses):
        _save_cache(path, cache)
    return headers


def _walk_audio(root: str, report: ScanReport) -> list[_FileStat]:
    """Audio files under ``root``, sorted by path; hidden files and folders skipped.

    Hidden entries hold the cache (``.voxmetric``), macOS ``._*`` resource
    forks (not audio despite their ``.wav`` ending) and temporary files.
    """
    found: list[_FileStat] = []
    stack, visited = [root], set()
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                continue  # a symbolic link loop
            visited.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError as error:
            report.bad.append((folder, f"cannot list folder ({error.strerror})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            ext = os.path.splitext(entry.name)[1].lower()
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif ext in audio.AUDIO_EXTENSIONS:
                    st = entry.stat()
                    found.append((entry.path, st.st_size, st.st_mtime_ns))
                elif ext in UNDECODABLE_EXTENSIONS:
                    report.undecodable[ext] += 1
            except OSError as error:
                report.bad.append((entry.path, f"cannot stat ({error.strerror}; a broken link?)"))
    return sorted(found)


def _stat_files(paths: list[str], report: ScanReport) -> list[_FileStat]:
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as error:
            report.bad.append((path, "no such file" if isinstance(error, FileNotFoundError) else error.strerror))
            continue
        found.append((path, st.st_size, st.st_mtime_ns))
    return found


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
        raise CorpusError(f"{report.summary()}\n(strict=True: fix or remove these files)")
    if not utterances:
        details = f"\n{report.summary()}" if not report.ok else ""
        raise CorpusError(f"{root}: no readable audio files ({', '.join(audio.AUDIO_EXTENSIONS)}) found{details}")
    if not report.ok:
        warnings.warn(report.summary(), ScanWarning, stacklevel=3)
    corpus = Corpus(utterances, root)
    corpus.scan_report = report
    return corpus


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
    """Read ``ROOT/<speaker>/**/*.{wav,flac,ogg}``: one folder per speaker, any depth below.

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
