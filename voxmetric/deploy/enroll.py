"""Enrol, identify and verify against a speaker database: what ``enroll`` / ``identify`` /
``verify --db`` run.

Every recording goes through :meth:`SpeakerModel.embed_with_quality` (VAD, quality
report, level normalisation), exactly as ``verify`` and ``embed`` do; the database
(:mod:`voxmetric.speakerdb`) is keyed by the model's fingerprint, so it refuses
embeddings from another model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.trials import key_paths, read_trials, trial_keys, trial_root
from ..errors import TrialsError, UnknownSpeakerError, UsageError, VoxmetricError
from ..inference.batch import BatchResult, Failure, Warn, embed_each, read_list
from ..inference.frontend import check_several
from ..inference.speaker_model import SpeakerModel, VerifyResult, _named
from .speakerdb import Speaker, SpeakerDB, normalise_name


@dataclass
class Identification:
    """The best-matching enrolled speakers of one recording."""

    path: str
    candidates: list[dict[str, Any]]  # name, score, llr (or None), accepted
    threshold: float | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "candidates": self.candidates, "threshold": self.threshold,
                "warnings": self.warnings}


def _embed(model: SpeakerModel, path: str) -> tuple[np.ndarray, list[str]]:
    embedding, report = model.embed_with_quality(path)
    return embedding, [_named(w, path) for w in report.warnings]


def enroll(model: SpeakerModel, db_path: str | os.PathLike, name: str, paths: list[str],
           replace: bool = False, progress: bool = False) -> tuple[Speaker, list[str]]:
    """Add recordings of ``name`` (averaged in the normalised embedding space); returns the
    speaker as stored and the quality warnings of the recordings."""
    result = enroll_files(model, db_path, name, paths, replace=replace, progress=progress)
    return result.speaker, result.warnings


@dataclass
class Enrolment:
    """What :func:`enroll_files` stored: the speaker, the recordings that failed (with
    ``skip_errors``), the quality warnings, and the recordings left out because the speaker
    has them already (``{path: the enrolled source it repeats}``)."""

    speaker: Speaker
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repeated: dict[str, str] = field(default_factory=dict)


def enroll_files(model: SpeakerModel, db_path: str | os.PathLike, name: str, paths: list[str],
                 replace: bool = False, progress: bool = False, skip_errors: bool = False,
                 on_warning: Warn | None = None, jobs: int = 1) -> Enrolment:
    """``voxmetric enroll``: embed ``paths`` (each once) and enrol them as ``name``.

    Without ``skip_errors`` the first bad recording is an error and the database is not
    touched; with it the good recordings are enrolled and the bad ones returned as failures.

    A recording the speaker has already (the same audio, enrolled earlier or given twice,
    under any file name) is not added again, so that it never weighs twice in the speaker's
    average (:meth:`SpeakerDB.enroll_new`): it is listed in ``repeated`` and warned about.

    Raises:
        VoxmetricError: a bad recording (without ``skip_errors``), or none usable.
        ModelMismatchError: the database belongs to another model.
    """
    paths = check_several(paths, "enroll")
    if not paths:
        raise VoxmetricError(f"enroll '{name}': no recordings given")
    done = embed_each(model, paths, skip_errors=skip_errors, progress=progress, on_warning=on_warning,
                      desc="enrolling", jobs=jobs)
    good = [p for p in dict.fromkeys(os.fspath(p) for p in paths) if p in done.embeddings]
    if not good:
        raise VoxmetricError(f"none of the {len(paths)} recording(s) of '{name}' could be embedded: "
                             + "; ".join(f"{f.item}: {f.reason}" for f in done.failures[:3]))
    with SpeakerDB.open(db_path, model.fingerprint) as db:
        speaker, repeats = db.enroll_new(name, np.stack([done.embeddings[p] for p in good]),
                                         sources=[os.path.basename(p) for p in good], replace=replace)
    repeated = {good[i]: source for i, source in repeats.items()}
    warnings = list(done.warnings)
    for path, source in repeated.items():
        warning = (f"{path}: the same recording as '{source}', which '{speaker.name}' has already: "
                   f"not added again")
        warnings.append(warning)
        if on_warning is not None:
            on_warning(warning)
    return Enrolment(speaker, done.failures, warnings, repeated)


def identify(model: SpeakerModel, db_path: str | os.PathLike, path: str, top: int = 3) -> Identification:
    """The ``top`` enrolled speakers closest to the recording, with scores and decisions."""
    embedding, warnings = _embed(model, path)
    with SpeakerDB.open(db_path, model.fingerprint, create=False) as db:
        ranked = db.identify(embedding, top=top)
    return _identification(model, path, ranked, _threshold_or_none(model), warnings)


def verify_enrolled(model: SpeakerModel, db_path: str | os.PathLike, name: str, path: str) -> VerifyResult:
    """Is the recording ``name``, as enrolled in the database?"""
    threshold = model.decision_threshold()
    embedding, warnings = _embed(model, path)
    with SpeakerDB.open(db_path, model.fingerprint, create=False) as db:
        score = db.verify(name, embedding)
    llr = None if model.calibration is None else model.calibration.llr(score)
    return VerifyResult(score=score, llr=llr, accepted=bool(score >= threshold), threshold=threshold,
                        warnings=tuple(warnings))


def _threshold_or_none(model: SpeakerModel) -> float | None:
    if model.threshold is None and model.calibration is None:
        return None
    return model.decision_threshold()


# --- verify: which mode ---------------------------------------------------------------


def verify_mode(audio: list[str], db: str | None = None, name: str | None = None, trials: str | None = None,
                list_path: str | None = None) -> str:
    """Which ``verify`` the arguments ask for: ``"pair"`` (A B), ``"enrolled"`` (--db --name A),
    ``"trials"`` (--trials FILE) or ``"list"`` (--db --list FILE).

    Raises:
        UsageError: arguments of two modes mixed, or the wrong number of recordings.
    """
    if trials:
        if audio or db or name or list_path:
            raise UsageError("--trials takes no recordings, --db, --name or --list")
        return "trials"
    if list_path:
        if not db or audio or name:
            raise UsageError("--list needs --db DB (each line 'NAME PATH') and takes no recordings or --name")
        return "list"
    if db:
        if not name or len(audio) != 1:
            raise UsageError("verify --db: give --name NAME and exactly one recording (or --list FILE)")
        return "enrolled"
    if name:
        raise UsageError("--name needs --db DB")
    if len(audio) != 2:
        raise UsageError(f"give two recordings (got {len(audio)}), --db DB --name NAME and one recording, "
                         f"--trials FILE, or --db DB --list FILE")
    return "pair"


def _decision(model: SpeakerModel, score: float, threshold: float) -> dict[str, Any]:
    return {"score": score, "llr": None if model.calibration is None else model.calibration.llr(score),
            "accepted": bool(score >= threshold), "threshold": threshold}


VERIFY_TRIALS_COLUMNS = ("enrol", "test", "label", "score", "llr", "accepted", "threshold")
VERIFY_PAIR_COLUMNS = ("enrol", "test", "score", "llr", "accepted", "threshold")
VERIFY_LIST_COLUMNS = ("name", "path", "score", "llr", "accepted", "threshold")
IDENTIFY_COLUMNS = ("path", "rank", "name", "score", "llr", "accepted")


def score_trial_pairs(model: SpeakerModel, trials_path: str | os.PathLike,
                      root: str | os.PathLike | None = None, skip_errors: bool = False, progress: bool = True,
                      on_warning: Warn | None = None, jobs: int = 1) -> BatchResult:
    """Cosine score of every pair of a VoxCeleb or Kaldi trial list, each distinct file
    embedded once. Rows: ``enrol``, ``test`` (the list's keys), ``label``, ``score``. With
    ``skip_errors`` the trials of a missing or bad file are left out and the file listed
    as a failure."""
    trials = read_trials(trials_path)
    keys = trial_keys(trials)
    if not keys:
        raise TrialsError(f"{trials_path}: no trials")
    folder = trial_root(trials_path, root, keys[0])
    try:
        paths, failures = {k: str(p) for k, p in zip(keys, key_paths(keys, folder, trials_path))}, []
    except TrialsError:
        if not skip_errors:
            raise
        paths, failures = {}, []
        for key in keys:  # find which keys fail, one at a time
            try:
                paths[key] = str(key_paths([key], folder, trials_path)[0])
            except TrialsError as error:
                failures.append(Failure(key, _missing_reason(error, key)))
    done = embed_each(model, paths.values(), skip_errors=skip_errors, progress=progress, on_warning=on_warning,
                      jobs=jobs)
    rows = []
    for trial in trials:
        a, b = (done.embeddings.get(paths.get(key, "")) for key in (trial.enrol, trial.test))
        if a is not None and b is not None:
            rows.append({"enrol": trial.enrol, "test": trial.test, "label": trial.label,
                         "score": model.cosine(a, b)})
    return BatchResult(rows, failures + done.failures, done.warnings)


def _missing_reason(error: TrialsError, key: str) -> str:
    text = str(error)
    return f"no such file (key '{key}' of the trial list)" if "not found" in text else text


def verify_trials(model: SpeakerModel, trials_path: str | os.PathLike, root: str | os.PathLike | None = None,
                  skip_errors: bool = False, progress: bool = True, on_warning: Warn | None = None,
                  jobs: int = 1) -> BatchResult:
    """``verify --trials``: score and decide every pair of a trial list (:func:`score_trial_pairs`).

    Rows: ``enrol``, ``test``, ``label``, ``score``, ``llr``, ``accepted``, ``threshold``.

    Raises:
        VoxmetricError: no decision threshold (a checkpoint without --calibration; checked
            before any embedding), an unreadable list, a missing or bad file (without
            ``skip_errors``).
    """
    threshold = model.decision_threshold()
    batch = score_trial_pairs(model, trials_path, root, skip_errors, progress, on_warning, jobs=jobs)
    batch.rows = [{**row, **_decision(model, row["score"], threshold)} for row in batch.rows]
    return batch


def verify_list(model: SpeakerModel, db_path: str | os.PathLike, list_path: str, skip_errors: bool = False,
                progress: bool = True, on_warning: Warn | None = None, jobs: int = 1) -> BatchResult:
    """``verify --db DB --list FILE``: each line ``NAME PATH``, verified against the enrolled ``NAME``.

    Rows: ``name``, ``path``, ``score``, ``llr``, ``accepted``, ``threshold``. With
    ``skip_errors`` unknown names and bad files are failures (``NAME PATH`` / the file).
    """
    threshold = model.decision_threshold()
    lines = read_list(list_path, fields=2, what="NAME PATH")
    with SpeakerDB.open(db_path, model.fingerprint, create=False) as db:
        known = set(db.names())
        failures, wanted = [], []
        for name, path in lines:
            if normalise_name(name) in known:
                wanted.append((name, path))
            elif skip_errors:
                failures.append(Failure(f"{name} {path}", f"no speaker '{name}' in {db_path}"))
            else:
                raise UnknownSpeakerError(f"{list_path}: '{name}' is not enrolled in {db_path} "
                                          f"({len(known)} speakers; see 'voxmetric speakers --db {db_path}')")
        done = embed_each(model, [p for _, p in wanted], skip_errors=skip_errors, progress=progress,
                          on_warning=on_warning, jobs=jobs)
        rows = [{"name": name, "path": path, **_decision(model, db.verify(name, done.embeddings[path]), threshold)}
                for name, path in wanted if path in done.embeddings]
    return BatchResult(rows, failures + done.failures, done.warnings)


def identify_list(model: SpeakerModel, db_path: str | os.PathLike, paths: list[str], top: int = 3,
                  skip_errors: bool = False, progress: bool = True, on_warning: Warn | None = None,
                  jobs: int = 1) -> BatchResult:
    """``identify --list FILE``: the ``top`` closest enrolled speakers of each recording.

    Rows: :meth:`Identification.to_dict` per file (``path``, ``candidates``, ``threshold``,
    ``warnings``); :func:`identification_rows` flattens them to one row per candidate.
    """
    threshold = _threshold_or_none(model)
    with SpeakerDB.open(db_path, model.fingerprint, create=False) as db:
        done = embed_each(model, paths, skip_errors=skip_errors, progress=progress, on_warning=on_warning,
                          jobs=jobs)
        rows = []
        for path in dict.fromkeys(paths):
            if path not in done.embeddings:
                continue
            notes = [w for w in done.warnings if w.startswith(f"{path}: ")]
            rows.append(_identification(model, path, db.identify(done.embeddings[path], top=top), threshold,
                                        notes).to_dict())
    return BatchResult(rows, done.failures, done.warnings)


def identification_rows(rows: list[dict]) -> list[dict]:
    """One row per candidate (``path``, ``rank``, ``name``, ``score``, ``llr``, ``accepted``): the TSV form."""
    return [{"path": row["path"], "rank": rank, **candidate}
            for row in rows for rank, candidate in enumerate(row["candidates"], start=1)]


def _identification(model, path, ranked, threshold, warnings) -> Identification:
    candidates = [{"name": name, "score": score,
                   "llr": None if model.calibration is None else model.calibration.llr(score),
                   "accepted": None if threshold is None else bool(score >= threshold)} for name, score in ranked]
    return Identification(path, candidates, threshold, warnings)


# --- the database without a model -------------------------------------------------------


def list_speakers(db_path: str | os.PathLike, model: SpeakerModel | None = None) -> tuple[str, list[Speaker]]:
    """``voxmetric speakers``: ``(model fingerprint the database belongs to, enrolled speakers)``.

    No model is needed: the database records its model's fingerprint. With ``model`` the
    database must belong to it.

    Raises:
        SpeakerDBError: missing or foreign file; ModelMismatchError: another model's database.
    """
    model_id = model.fingerprint if model is not None else SpeakerDB.model_of(db_path)
    with SpeakerDB.open(db_path, model_id, create=False) as db:
        return model_id, [db.get(name) for name in db.names()]


def remove_speaker(db_path: str | os.PathLike, name: str, model: SpeakerModel | None = None) -> str:
    """Remove ``name`` from the database; returns the database's model fingerprint."""
    model_id = model.fingerprint if model is not None else SpeakerDB.model_of(db_path)
    with SpeakerDB.open(db_path, model_id, create=False) as db:
        db.remove(name)
    return model_id
