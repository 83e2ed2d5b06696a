"""Many inputs, one model load: embedding lists and folders with per-file errors and warnings.

Every command that embeds several files (``embed``, ``verify --trials``, ``verify --db
--list``, ``identify --list``, ``enroll``, ``calibrate``) goes through :func:`embed_each`:

* each distinct file is embedded once, however many trials or lines name it;
* its quality warnings (short speech, low SNR, clipping, low source rate) are handed to
  ``on_warning`` once per file, as they happen;
* without ``skip_errors`` the first bad file raises its one-line error (naming it) before
  anything is written; with it, the bad files are collected as :class:`Failure` rows and
  the caller writes the results of the good ones and the failures beside them
  (:func:`write_failures`, ``OUT.errors.tsv``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..audio.io import readable_extensions
from ..data.scan import audio_files_under
from ..errors import UsageError, VoxmetricError
from ..fileio import atomic_open, progress_bar

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Failure:
    """One input that could not be used: the file (or line) and the one-line reason."""

    item: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"item": self.item, "reason": self.reason}


@dataclass
class Embedded:
    """What :func:`embed_each` made: ``{path: (dim,) embedding}`` of the good files, the
    failures (only with ``skip_errors``) and every quality warning, in input order."""

    embeddings: dict[str, np.ndarray]
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _named(warning: str, path: str) -> str:
    return warning if warning.startswith(path) else f"{path}: {warning}"


def _reason(error: VoxmetricError, path: str) -> str:
    text = str(error)
    return text[len(path) + 2:] if text.startswith(f"{path}: ") else text


def embed_each(model, paths: Iterable[str], skip_errors: bool = False, progress: bool = True,
               on_warning: Warn | None = None, desc: str = "embedding", jobs: int = 1) -> Embedded:
    """Embed each distinct path once through ``model``'s front-end (module docstring).

    Args:
        model: a :class:`~voxmetric.inference.speaker_model.SpeakerModel` (anything with
            ``embed_with_quality(path) -> (embedding, report)``; with ``jobs`` > 1, picklable).
        paths: audio files; repeats are embedded once.
        skip_errors: collect unreadable / speechless / too-short files as failures
            instead of raising at the first.
        progress: show a progress bar (only on a terminal: :func:`voxmetric.fileio.progress_bar`).
        on_warning: called with each quality warning (``"PATH: ..."``), once per file.
        jobs: worker processes (:mod:`voxmetric.inference.parallel`; 0: one per CPU
            core); 1 (default) embeds in this process. The results are the same, in the
            same order.

    Raises:
        VoxmetricError: the first bad file, without ``skip_errors``.
    """
    from .parallel import embed_in_workers, resolve_jobs

    unique = list(dict.fromkeys(os.fspath(p) for p in paths))
    jobs = resolve_jobs(jobs)
    if jobs > 1 and len(unique) > 1:
        results = embed_in_workers(model, unique, jobs)
    else:
        results = ((path, _embed_one(model, path)) for path in unique)
    done = Embedded({})
    bar = progress_bar(results, enabled=progress, desc=desc, unit="file", leave=False, total=len(unique))
    try:
        for path, result in bar:
            if isinstance(result, VoxmetricError):
                if not skip_errors:
                    raise result
                done.failures.append(Failure(path, _reason(result, path)))
                continue
            embedding, report = result
            done.embeddings[path] = embedding
            for warning in report.warnings:
                warning = _named(warning, path)
                done.warnings.append(warning)
                if on_warning is not None:
                    on_warning(warning)
    finally:
        bar.close()
        results.close()  # stops the workers at once on an error or interrupt
    return done


def _embed_one(model, path: str):
    """``model.embed_with_quality(path)``, or the VoxmetricError it raised."""
    try:
        return model.embed_with_quality(path)
    except VoxmetricError as error:
        return error


def errors_path(out: str | os.PathLike) -> str:
    """The sidecar file listing an output's failures: ``OUT.errors.tsv``."""
    return f"{os.fspath(out)}.errors.tsv"


def write_failures(out: str | os.PathLike, failures: Sequence[Failure]) -> str | None:
    """Write ``ITEM<TAB>REASON`` lines to ``OUT.errors.tsv`` (atomically); remove a stale one
    when there are no failures. Returns the sidecar's path, or ``None``."""
    path = errors_path(out)
    if not failures:
        if os.path.isfile(path):
            os.unlink(path)
        return None
    with atomic_open(path) as f:
        f.write("item\treason\n")
        for failure in failures:
            f.write(f"{failure.item}\t{' '.join(failure.reason.split())}\n")
    return path


# --- gathering inputs -----------------------------------------------------------------


def read_list(path: str | os.PathLike, fields: int = 1, what: str = "PATH") -> list[list[str]]:
    """Lines of a list file (blank lines and ``#`` comments skipped), each split into
    ``fields`` whitespace-separated fields (the last takes the rest of the line, so paths
    may hold spaces).

    Raises:
        VoxmetricError: unreadable file, or a line with too few fields (named).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise VoxmetricError(f"{path}: cannot read list ({error.strerror})") from None
    except UnicodeDecodeError:
        raise VoxmetricError(f"{path}: not a UTF-8 text list (an audio file given as --list?)") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        row = text.split(None, fields - 1) if fields > 1 else [text]
        if len(row) != fields:
            raise VoxmetricError(f"{path}, line {number}: expected '{what}', got {text!r}")
        rows.append(row)
    return rows


def audio_in_folder(folder: str | os.PathLike) -> list[str]:
    """Audio files under ``folder``, recursively, sorted, found as training's corpus scan finds
    them (:func:`voxmetric.data.scan.audio_files_under`): links to folders followed, hidden
    files and folders (``._x.wav``, ``.Trash/``) skipped; endings from
    :func:`voxmetric.audio.io.readable_extensions` (case-insensitive)."""
    return audio_files_under(folder, readable_extensions())


def gather_inputs(items: Sequence[str], list_path: str | None = None,
                  root: str | None = None) -> tuple[list[str], list[str]]:
    """``(ids, paths)`` of the files ``embed`` is given: files and folders (recursed) on the
    command line, then the lines of ``list_path``. With ``root`` the given paths are
    relative to it and kept as given as ids (e.g. the keys of a trial list); otherwise the
    ids are the paths.

    Raises:
        UsageError: nothing to embed.
        VoxmetricError: an empty folder, an unreadable list.
    """
    given = list(items) + ([row[0] for row in read_list(list_path)] if list_path else [])
    ids: list[str] = []
    for item in given:
        folder = os.path.join(root, item) if root else item
        if os.path.isdir(folder):
            found = audio_in_folder(folder)
            if not found:
                raise VoxmetricError(f"{folder}: no audio files ({', '.join(readable_extensions())}) in this "
                                     f"folder or below")
            ids += [os.path.relpath(p, root) for p in found] if root else found
        else:
            ids.append(item)
    if not ids:
        raise UsageError("give audio files, a folder or --list FILE")
    ids = list(dict.fromkeys(ids))
    return ids, [os.path.join(root, i) for i in ids] if root else list(ids)


def embed_to_file(model, ids: Sequence[str], paths: Sequence[str], out: str, skip_errors: bool = False,
                  progress: bool = True, on_warning: Warn | None = None,
                  jobs: int = 1) -> tuple[tuple[int, int], list[Failure]]:
    """``voxmetric embed``: embed ``paths`` and write them under ``ids`` with the model's
    fingerprint and front-end settings (:func:`voxmetric.evaluate.embeddings.save_embeddings`).

    Returns:
        ``((files, dim), failures)``; failures only with ``skip_errors`` (also written to
        ``OUT.errors.tsv``).

    Raises:
        VoxmetricError: the first bad file (without ``skip_errors``; nothing is written),
            or no file could be embedded.
    """
    from ..evaluate.embeddings import save_embeddings

    done = embed_each(model, paths, skip_errors=skip_errors, progress=progress, on_warning=on_warning, jobs=jobs)
    kept = [(uid, path) for uid, path in zip(ids, paths) if path in done.embeddings]
    if not kept:
        write_failures(out, done.failures)
        raise VoxmetricError(f"none of the {len(paths)} file(s) could be embedded; see {errors_path(out)}")
    matrix = np.stack([done.embeddings[path] for _, path in kept])
    save_embeddings(out, [uid for uid, _ in kept], matrix, metadata=model_metadata(model))
    write_failures(out, done.failures)
    return matrix.shape, done.failures


def model_metadata(model) -> dict:
    """What an embeddings file records about the model that made it."""
    return {"model": model.fingerprint, "frontend": model.settings.to_dict()}


# --- results of many inputs -------------------------------------------------------------


@dataclass
class BatchResult:
    """Rows of a batch command (one dict per trial, line or file), the inputs that failed
    (only with ``skip_errors``) and the quality warnings."""

    rows: list[dict]
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


OUTPUT_FORMATS = ("jsonl", "tsv")
"""Formats of batch results: JSON Lines (one object a line) or tab-separated with a header."""


def _tsv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split())


def format_rows(rows: Sequence[dict], format: str, columns: Sequence[str]) -> str:
    """``rows`` as JSON Lines (all keys; :func:`voxmetric.fileio.dumps_json`) or as TSV
    (``columns``, header first; empty cell = none, booleans 1 / 0)."""
    from ..fileio import dumps_json

    if format not in OUTPUT_FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(OUTPUT_FORMATS)}")
    if format == "jsonl":
        return "".join(dumps_json(row) + "\n" for row in rows)
    lines = ["\t".join(columns)] + ["\t".join(_tsv_cell(row.get(c)) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def write_rows(rows: Sequence[dict], out: str | None, format: str, columns: Sequence[str]) -> None:
    """Write :func:`format_rows` to ``out`` atomically, or to stdout when ``out`` is None or ``-``."""
    import sys

    text = format_rows(rows, format, columns)
    if out in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_open(out) as f:
        f.write(text)


def format_from_name(out: str | None, format: str | None) -> str:
    """The output format: ``format`` when given, else ``tsv`` for ``*.tsv`` / ``*.txt`` names, else ``jsonl``."""
    if format:
        return format
    return "tsv" if out and out.lower().endswith((".tsv", ".txt")) else "jsonl"
