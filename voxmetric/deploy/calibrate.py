"""Calibrate a model on your own labelled pairs: LLR map, decision threshold, confidence intervals.

A threshold tuned on VoxCeleb rejects or accepts far too much on other microphones,
languages and durations. From a user's own labelled pairs (a few dozen to start) this
module fits the score -> log-likelihood-ratio map (:func:`fit_calibration`, linear
logistic regression, Brümmer & du Preez 2006) and picks the decision threshold:

* at the equal error rate point (default; :func:`voxmetric.evaluate.metrics.eer`, FAR
  and FRR interpolated between the DET points either side), or
* for a target false acceptance rate: the lowest threshold whose FAR on the pairs is at
  most ``target_far`` (a trial is accepted when ``score >= threshold``).

The uncertainty of both is reported as a stratified percentile bootstrap interval (the
method of :func:`voxmetric.evaluate.metrics.eer_confidence_interval`): each replicate
resamples the target and the non-target pairs with replacement, keeping both counts,
and recomputes the EER and the threshold; the interval is the 2.5 % and 97.5 %
quantiles. Pairs are treated as independent; pairs sharing recordings or speakers make
the true interval wider.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..data.trials import read_trials
from ..errors import TrialsError, VoxmetricError
from ..evaluate.calibration import Calibration, fit_calibration
from ..evaluate.metrics import det_curve, eer
from ..fileio import atomic_open

MIN_PAIRS_PER_CLASS = 50
"""Fewer target or non-target pairs than this: the intervals are too wide to be useful (warning)."""
MIN_FALSE_ACCEPTS = 10
"""A FAR target resting on fewer expected false accepts than this is imprecise (warning)."""
CONFIDENCE = 0.95
"""Coverage of the bootstrap intervals."""
FORMAT = "voxmetric-calibration"
FORMAT_VERSION = 1


class CalibrationError(VoxmetricError):
    """Calibration pairs or a calibration file are unusable (the message says why)."""


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted calibration with its decision threshold and their uncertainty.

    Attributes:
        calibration: ``llr = scale * score + offset`` (natural log).
        threshold: score threshold (accept when ``score >= threshold``).
        threshold_ci: ``(low, high)`` bootstrap interval of ``threshold``.
        eer: equal error rate on the pairs (a fraction); ``eer_ci`` its interval.
        far / frr: error rates of ``threshold`` on the pairs.
        target_far: the requested FAR, or ``None`` for the EER point.
        n_target / n_nontarget: pair counts.
        model: name of the model that produced the scores (``None`` if unknown).
        warnings: messages for the user (too few pairs, ...).
    """

    calibration: Calibration
    threshold: float
    threshold_ci: tuple[float, float]
    eer: float
    eer_ci: tuple[float, float]
    far: float
    frr: float
    target_far: float | None
    n_target: int
    n_nontarget: int
    model: str | None = None
    n_bootstrap: int = 1000
    warnings: list[str] = field(default_factory=list)

    @property
    def scale(self) -> float:
        return self.calibration.scale

    @property
    def offset(self) -> float:
        return self.calibration.offset

    def to_dict(self) -> dict:
        """The JSON form written by :meth:`save`."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "model": self.model,
            "calibration": self.calibration.to_dict(),
            "threshold": self.threshold, "threshold_ci": list(self.threshold_ci),
            "operating_point": "eer" if self.target_far is None else "target_far", "target_far": self.target_far,
            "eer": self.eer, "eer_ci": list(self.eer_ci), "far": self.far, "frr": self.frr,
            "n_target": self.n_target, "n_nontarget": self.n_nontarget,
            "confidence": CONFIDENCE, "n_bootstrap": self.n_bootstrap, "warnings": list(self.warnings),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        with atomic_open(path) as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationResult":
        """Read a file written by :meth:`save`.

        Raises:
            CalibrationError: missing file, not JSON, another format, or a missing / bad field.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such calibration file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CalibrationError(f"{path}: not a JSON calibration file ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CalibrationError(f"{path}: not a voxmetric calibration file (expected \"format\": \"{FORMAT}\")")
        if data.get("version") != FORMAT_VERSION:
            raise CalibrationError(f"{path}: calibration format version {data.get('version')!r}; "
                                   f"this voxmetric reads version {FORMAT_VERSION}")
        try:
            result = cls(
                calibration=Calibration.from_dict(data["calibration"]),
                threshold=float(data["threshold"]), threshold_ci=_pair(data["threshold_ci"]),
                eer=float(data["eer"]), eer_ci=_pair(data["eer_ci"]),
                far=float(data["far"]), frr=float(data["frr"]),
                target_far=None if data["target_far"] is None else float(data["target_far"]),
                n_target=int(data["n_target"]), n_nontarget=int(data["n_nontarget"]),
                model=data["model"], n_bootstrap=int(data["n_bootstrap"]), warnings=list(data["warnings"]),
            )
        except KeyError as error:
            raise CalibrationError(f"{path}: field {error.args[0]!r} is missing") from None
        except (TypeError, ValueError) as error:
            raise CalibrationError(f"{path}: bad field value ({error})") from None
        if not math.isfinite(result.threshold):  # json reads NaN and Infinity
            raise CalibrationError(f"{path}: bad field value (threshold must be a finite number, "
                                   f"got {result.threshold})")
        if result.model is not None and not isinstance(result.model, str):
            raise CalibrationError(f"{path}: bad field value (model must be a string or null, got {result.model!r})")
        return result


def _pair(value) -> tuple[float, float]:
    low, high = value
    return float(low), float(high)


def _check_pairs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise CalibrationError(f"scores and labels must be two (pairs,) arrays of equal length, "
                               f"got shapes {scores.shape} and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise CalibrationError(f"labels must be 0/1 or True/False, got {labels[~np.isin(labels, (0, 1))][0]!r}")
    labels = labels.astype(bool)
    n_target = int(labels.sum())
    if n_target == 0 or n_target == labels.size:
        missing = "same-speaker (label 1)" if n_target == 0 else "different-speaker (label 0)"
        raise CalibrationError(f"calibration needs both same-speaker and different-speaker pairs; the "
                               f"{labels.size} pairs given hold no {missing} pair")
    return scores, labels


def threshold_at(scores, labels, target_far: float | None = None) -> float:
    """Score threshold at the EER point (``target_far=None``) or for FAR <= ``target_far``.

    Args:
        scores: ``(pairs,)`` scores; labels: ``(pairs,)`` 1 for same speaker.
        target_far: wanted false acceptance rate in (0, 1); the returned threshold is
            the lowest (most accepting) one whose FAR on these pairs is at most it.
    """
    if target_far is None:
        return eer(scores, labels)[1]
    far, _, thresholds = det_curve(scores, labels)
    return float(thresholds[np.count_nonzero(far > target_far)])  # far never increases


def _error_rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    accepted = scores >= threshold
    return float(accepted[~labels].mean()), float((~accepted[labels]).mean())


def _bootstrap(scores, labels, target_far, n_bootstrap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(eers, thresholds)`` of ``n_bootstrap`` stratified resamples (module docstring)."""
    rng = np.random.default_rng(seed)
    targets, nontargets = scores[labels], scores[~labels]
    resampled_labels = np.r_[np.ones(targets.size, dtype=bool), np.zeros(nontargets.size, dtype=bool)]
    eers, thresholds = np.empty(n_bootstrap), np.empty(n_bootstrap)
    for i in range(n_bootstrap):
        resampled = np.r_[rng.choice(targets, targets.size), rng.choice(nontargets, nontargets.size)]
        eers[i], eer_threshold = eer(resampled, resampled_labels)
        thresholds[i] = eer_threshold if target_far is None else threshold_at(resampled, resampled_labels, target_far)
    return eers, thresholds


def _warnings(n_target: int, n_nontarget: int, target_far: float | None) -> list[str]:
    warnings = []
    if min(n_target, n_nontarget) < MIN_PAIRS_PER_CLASS:
        warnings.append(f"only {n_target} same-speaker and {n_nontarget} different-speaker pairs (fewer than "
                        f"{MIN_PAIRS_PER_CLASS} of a kind): the confidence intervals are wide and the threshold "
                        f"is a rough first estimate; add pairs")
    if target_far is not None and n_nontarget * target_far < MIN_FALSE_ACCEPTS:
        needed = math.ceil(MIN_FALSE_ACCEPTS / target_far)
        warnings.append(f"a FAR of {target_far:g} on {n_nontarget} different-speaker pairs rests on "
                        f"{n_nontarget * target_far:.1f} false acceptances: the threshold is imprecise; "
                        f"use at least {needed} different-speaker pairs")
    return warnings


def calibrate_from_scores(scores, labels, target_far: float | None = None, n_bootstrap: int = 1000,
                          seed: int = 0, prior: float = 0.5, model: str | None = None) -> CalibrationResult:
    """Fit the LLR calibration and pick the threshold, with bootstrap intervals (module docstring).

    Args:
        scores: ``(pairs,)`` finite scores (cosine), higher = more likely the same speaker.
        labels: ``(pairs,)`` 1 / True for same-speaker pairs, 0 / False otherwise.
        target_far: pick the threshold for this false acceptance rate in (0, 1)
            instead of the EER point.
        n_bootstrap: bootstrap replicates (at least 1).
        seed: bootstrap seed; equal inputs and seed give equal results.
        prior: target prior the logistic fit is weighted for (see :func:`fit_calibration`).
        model: name of the model that produced the scores, stored with the result.

    Raises:
        CalibrationError: mismatched shapes, bad labels, a kind of pair missing, bad options.
        ScoresError: non-finite scores, or all scores equal.
    """
    scores, labels = _check_pairs(scores, labels)
    if target_far is not None and not 0 < target_far < 1:
        raise CalibrationError(f"target_far must be between 0 and 1 (exclusive), got {target_far}")
    if n_bootstrap < 1:
        raise CalibrationError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    calibration = fit_calibration(scores, labels, prior=prior)
    equal_error_rate = eer(scores, labels)[0]
    threshold = threshold_at(scores, labels, target_far)
    far, frr = _error_rates(scores, labels, threshold)
    eers, thresholds = _bootstrap(scores, labels, target_far, n_bootstrap, seed)
    tail = (1 - CONFIDENCE) / 2
    n_target = int(labels.sum())
    return CalibrationResult(
        calibration=calibration, threshold=threshold,
        threshold_ci=_pair(np.quantile(thresholds, [tail, 1 - tail])),
        eer=equal_error_rate, eer_ci=_pair(np.quantile(eers, [tail, 1 - tail])),
        far=far, frr=frr, target_far=target_far, n_target=n_target, n_nontarget=labels.size - n_target,
        model=model, n_bootstrap=n_bootstrap, warnings=_warnings(n_target, labels.size - n_target, target_far),
    )


def calibrate_trials(model, trials_path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                     target_far: float | None = None, n_bootstrap: int = 1000, seed: int = 0,
                     prior: float = 0.5, progress: bool = False) -> CalibrationResult:
    """Score a user's trial list with ``model`` and calibrate on it: the ``calibrate`` command.

    Every distinct file is embedded once with ``model.embed_batch`` (so with exactly the
    preprocessing ``verify`` uses) and each pair scored by cosine similarity.

    Args:
        model: a :class:`voxmetric.pretrained.SpeakerModel` (anything with ``name`` and
            ``embed_batch(paths, progress=...) -> (files, dim)``).
        trials_path: VoxCeleb (``LABEL A B``) or Kaldi (``A B target``) trial list.
        audio_root: directory the list's paths are relative to (default: the list's own).
        target_far, n_bootstrap, seed, prior: as in :func:`calibrate_from_scores`.
        progress: show a progress bar while embedding.

    Raises:
        TrialsError: unreadable list, or a file it names does not exist.
    """
    trials_path = os.fspath(trials_path)
    trials = read_trials(trials_path)
    from ..evaluate.embeddings import EmbeddingTable
    from ..evaluate.pipeline import key_paths, trial_keys, trial_root
    from ..evaluate.scoring import score_trials

    # The files, embeddings and scores of the trials as `embed` + `score` would make them.
    keys = trial_keys(trials)
    root = trial_root(trials_path, audio_root, keys[0])
    paths = key_paths(keys, root)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise TrialsError(f"{trials_path}: {len(missing)} file(s) not found under {root}, e.g. {missing[0]}")
    table = EmbeddingTable(keys, model.embed_batch([str(p) for p in paths], progress=progress), trials_path)
    scores = score_trials(trials, table, source=trials_path)
    labels = np.array([trial.label for trial in trials], dtype=bool)
    return calibrate_from_scores(scores, labels, target_far=target_far, n_bootstrap=n_bootstrap, seed=seed,
                                 prior=prior, model=getattr(model, "fingerprint", None) or getattr(model, "name", None))
