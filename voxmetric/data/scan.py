"""Scanning a corpus' audio files: headers read in parallel (nothing decoded), a durations
cache keyed by (relative path, size, modification time), and the report of files left out.

A corpus of a million files is scanned once; see :func:`cache_file`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from .. import audio
from ..audio.io import readable_extensions
from ..errors import AudioError
from ..fileio import atomic_open

UNDECODABLE_EXTENSIONS = (".m4a", ".aac")
"""Audio that libsndfile cannot decode: counted during scans, never read (and ``.mp3`` where
the installed libsndfile is older than 1.1: :func:`undecodable_extensions`)."""

FFMPEG_HINT = (
    "libsndfile cannot decode AAC (.m4a, as shipped with VoxCeleb2); convert the files once "
    "with ffmpeg, e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 out.flac`, and read the converted tree"
)

MP3_HINT = (
    "the installed libsndfile is older than 1.1 and cannot decode MP3; install a newer one "
    "(soundfile's wheels bundle it) or convert the files once with ffmpeg, e.g. "
    "`ffmpeg -i in.mp3 -ac 1 -ar 16000 out.flac`"
)


def undecodable_extensions() -> tuple[str, ...]:
    """Audio file endings a scan counts but cannot read here: :data:`UNDECODABLE_EXTENSIONS`,
    plus ``.mp3`` where :func:`voxmetric.audio.io.readable_extensions` lacks it."""
    return UNDECODABLE_EXTENSIONS + (() if ".mp3" in readable_extensions() else (".mp3",))

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
        undecodable: file ending -> count of files libsndfile cannot decode here
            (:func:`undecodable_extensions`: .m4a, .aac; .mp3 with libsndfile older than 1.1).
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
        for hint in dict.fromkeys(_hint(ext) for ext in sorted(self.undecodable)):
            counts = ", ".join(f"{n} {ext}" for ext, n in sorted(self.undecodable.items()) if _hint(ext) == hint)
            lines.append(f"{self.root}: ignored {counts} files: {hint}")
        return "\n".join(lines)


def _hint(extension: str) -> str:
    return MP3_HINT if extension == ".mp3" else FFMPEG_HINT


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


def _files_under(root: str, on_error: Callable[[str, OSError], None] | None = None) -> Iterator[str]:
    """Paths of the files under ``root``, recursively, hidden files and folders skipped, links
    to folders followed (each folder listed once, so a link loop ends).

    Hidden entries (names starting with ``.``) hold caches (``.voxmetric``), macOS ``._*``
    resource forks (not audio despite their ``.wav`` ending), ``.Trash`` folders and
    temporary files. ``on_error(folder, error)`` hears of each folder that cannot be listed.
    """
    visited: set[tuple[int, int]] = set()

    def failed(error: OSError) -> None:
        if on_error is not None:
            on_error(error.filename or root, error)

    for folder, subfolders, names in os.walk(root, onerror=failed, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError as error:
            failed(error)
            subfolders[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:  # a link loop, or a second link to one folder
            subfolders[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        subfolders[:] = sorted(n for n in subfolders if not n.startswith("."))  # a fixed walk
        yield from (os.path.join(folder, n) for n in names if not n.startswith("."))


def _ending(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def audio_files_under(folder: str | os.PathLike, extensions: tuple[str, ...] | None = None) -> list[str]:
    """Audio files under ``folder``, recursively, sorted: links to folders followed (once
    each), hidden files and folders skipped, and only endings in ``extensions``
    (case-insensitive; default :func:`voxmetric.audio.io.readable_extensions`).
    Folders that cannot be listed are passed over."""
    extensions = readable_extensions() if extensions is None else extensions
    return sorted(p for p in _files_under(os.fspath(folder)) if _ending(p) in extensions)


def _walk_audio(root: str, report: ScanReport) -> list[_FileStat]:
    """Audio files under ``root``, sorted by path (:func:`_files_under`: hidden entries skipped,
    links followed); the undecodable ones counted, the unlistable folders and broken links reported."""
    readable, undecodable = readable_extensions(), undecodable_extensions()
    found: list[_FileStat] = []

    def unlisted(folder: str, error: OSError) -> None:
        report.bad.append((folder, f"cannot list folder ({error.strerror})"))

    for path in _files_under(root, unlisted):
        ext = _ending(path)
        if ext in readable:
            try:
                st = os.stat(path)
            except OSError as error:
                report.bad.append((path, f"cannot stat ({error.strerror}; a broken link?)"))
                continue
            found.append((path, st.st_size, st.st_mtime_ns))
        elif ext in undecodable:
            report.undecodable[ext] += 1
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
