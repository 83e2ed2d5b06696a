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

from ..inference.speaker_model import SpeakerModel, VerifyResult, _named
from .speakerdb import Speaker, SpeakerDB


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
    from tqdm.auto import tqdm

    embeddings, warnings = [], []
    for path in tqdm(paths, desc="enrolling", unit="file", disable=not progress):
        embedding, notes = _embed(model, path)
        embeddings.append(embedding)
        warnings += notes
    with SpeakerDB.open(db_path, model.fingerprint) as db:
        speaker = db.enroll(name, np.stack(embeddings), sources=[os.path.basename(p) for p in paths],
                            replace=replace)
    return speaker, warnings


def identify(model: SpeakerModel, db_path: str | os.PathLike, path: str, top: int = 3) -> Identification:
    """The ``top`` enrolled speakers closest to the recording, with scores and decisions."""
    embedding, warnings = _embed(model, path)
    with SpeakerDB.open(db_path, model.fingerprint, create=False) as db:
        ranked = db.identify(embedding, top=top)
    threshold = _threshold_or_none(model)
    candidates = [{"name": name, "score": score,
                   "llr": None if model.calibration is None else model.calibration.llr(score),
                   "accepted": None if threshold is None else bool(score >= threshold)} for name, score in ranked]
    return Identification(path, candidates, threshold, warnings)


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
