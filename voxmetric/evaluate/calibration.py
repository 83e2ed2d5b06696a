"""Score calibration: cosine scores -> log-likelihood ratios, and decision thresholds.

A raw cosine score says which of two trials is more likely same-speaker, not how
likely. Linear logistic calibration (Brümmer & du Preez, "Application-independent
evaluation of speaker detection", Computer Speech and Language 20(2-3), 2006; the
FoCal toolkit) maps a score ``s`` to a natural-log likelihood ratio

    llr(s) = scale * s + offset,   llr = log p(s | same speaker) / p(s | different speakers),

fitted by minimising the prior-weighted cross-entropy (FoCal's variant, P = ``prior``):

    C(scale, offset) = P / N_tar * sum_tar log(1 + exp(-(llr_i + logit P)))
                     + (1 - P) / N_non * sum_non log(1 + exp(llr_j + logit P))

which is convex in ``(scale, offset)``. With the LLR, the Bayes decision for a target
prior ``P_target`` and equal costs is ``accept if llr > -logit(P_target)``; see
:meth:`Calibration.bayes_threshold`. :func:`cllr` measures how good an LLR is
(0 perfect, 1 = no information, above 1 = worse than saying nothing).

Calibrating on a user's labelled pairs (:func:`calibrate_from_scores`, saved as a
:class:`CalibrationResult` JSON file) also picks the decision threshold:

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
from typing import Any

import numpy as np
from scipy.special import expit

from ..errors import CalibrationError, ScoresError
from ..fileio import atomic_open
from .metrics import DEFAULT_N_BOOTSTRAP, _check, det_curve, eer

#: Ridge on the standardised slope: keeps the fit finite when the scores separate the
#: classes perfectly (the unpenalised optimum is then at infinity); far too small to
#: move a fit on overlapping scores (a relative change below 1e-4 on typical data).
_RIDGE = 1e-6


@dataclass(frozen=True)
class Calibration:
    """Linear score-to-LLR map ``llr = scale * score + offset`` (natural log)."""

    scale: float
    offset: float

    def __post_init__(self):
        for field in ("scale", "offset"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"calibration {field} must be a finite number, got {value!r}")
        if self.scale <= 0:
            raise ValueError(f"calibration scale must be positive (higher score = more likely same speaker), "
                             f"got {self.scale}")

    def llr(self, scores):
        """Log-likelihood ratio of ``scores`` (a float, or an array of any shape)."""
        if np.ndim(scores) == 0:
            return float(self.scale * float(scores) + self.offset)
        return self.scale * np.asarray(scores, dtype=np.float64) + self.offset

    def bayes_threshold(self, prior: float = 0.5) -> float:
        """Score above which the Bayes decision accepts, for target prior ``prior`` and equal costs.

        Accept when ``llr > -logit(prior)``, i.e. ``score > (-logit(prior) - offset) / scale``.
        """
        _check_prior(prior)
        return (-_logit(prior) - self.offset) / self.scale

    def to_dict(self) -> dict[str, float]:
        return {"scale": float(self.scale), "offset": float(self.offset)}

    @classmethod
    def from_dict(cls, data: Any) -> "Calibration":
        """From ``{"scale": ..., "offset": ...}`` (the weights-file and JSON form)."""
        if isinstance(data, Calibration):
            return data
        if not isinstance(data, dict) or set(data) != {"scale", "offset"}:
            raise ValueError(f"calibration must be {{'scale': float, 'offset': float}}, got {data!r}")
        return cls(float(data["scale"]), float(data["offset"]))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _check_prior(prior: float) -> None:
    if not 0 < prior < 1:
        raise ValueError(f"prior must be strictly between 0 and 1, got {prior}")


def fit_calibration(scores, labels, prior: float = 0.5, max_iterations: int = 100) -> Calibration:
    """Fit ``llr = scale * score + offset`` by prior-weighted logistic regression (module docstring).

    Newton's method with step halving on the (convex) objective, in standardised score
    units for conditioning.

    Args:
        scores: ``(trials,)`` finite scores, higher = more likely same speaker.
        labels: ``(trials,)`` 1 / True for target (same-speaker) trials, 0 / False otherwise.
        prior: the target prior ``P`` the objective is weighted for (0.5 weights both
            classes equally whatever their counts).
        max_iterations: Newton steps at most (it converges in under 20 on real scores).

    Returns:
        The fitted :class:`Calibration`.

    Raises:
        ScoresError: mismatched shapes, non-finite scores, bad labels, a class missing,
            or all scores equal (nothing to fit a slope to).
    """
    _check_prior(prior)
    scores, labels = _check(scores, labels)
    mean, std = scores.mean(), scores.std()
    if std == 0:
        raise ScoresError(f"all {scores.size} scores are equal ({mean}); cannot fit a calibration")
    x = (scores - mean) / std
    sign = np.where(labels, 1.0, -1.0)
    weight = np.where(labels, prior / labels.sum(), (1 - prior) / (~labels).sum())
    shift = _logit(prior)

    def objective(params: np.ndarray) -> float:
        z = params[0] * x + params[1] + shift
        return float(weight @ np.logaddexp(0.0, -sign * z) + _RIDGE * params[0] ** 2)

    params = np.zeros(2)
    value = objective(params)
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(max_iterations):
        z = params[0] * x + params[1] + shift
        p_wrong = expit(-sign * z)  # probability given to the wrong class: the gradient factor
        gradient = design.T @ (weight * -sign * p_wrong) + np.array([2 * _RIDGE * params[0], 0.0])
        curvature = weight * p_wrong * (1 - p_wrong)
        hessian = (design * curvature[:, None]).T @ design + np.diag([2 * _RIDGE, 1e-12])
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-10:
            candidate = params - size * step
            candidate_value = objective(candidate)
            if candidate_value <= value:
                break
            size /= 2
        else:
            break
        params, improvement, value = candidate, value - candidate_value, candidate_value
        if improvement < 1e-12 and np.abs(size * step).max() < 1e-9:
            break
    slope, intercept = params
    return Calibration(scale=float(slope / std), offset=float(intercept - slope * mean / std))


def cllr(llrs, labels) -> float:
    """Log-likelihood-ratio cost in bits (Brümmer & du Preez 2006, equation 29).

    ``Cllr = 1/2 [mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)]``: 0 for perfect,
    1 for an uninformative LLR of 0 everywhere; above 1 means badly calibrated.
    """
    llrs, labels = _check(llrs, labels)
    target = np.logaddexp(0.0, -llrs[labels]).mean()
    nontarget = np.logaddexp(0.0, llrs[~labels]).mean()
    return float((target + nontarget) / (2 * math.log(2)))


# --- calibrating on labelled pairs: LLR map, threshold, intervals, file ----------------

MIN_PAIRS_PER_CLASS = 50
"""Fewer target or non-target pairs than this: the intervals are too wide to be useful (warning)."""
MIN_FALSE_ACCEPTS = 10
"""A FAR target resting on fewer expected false accepts than this is imprecise (warning)."""
CONFIDENCE = 0.95
"""Coverage of the bootstrap intervals."""
FORMAT = "voxmetric-calibration"
FORMAT_VERSION = 1


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
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
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
            return cls(
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


def _pair(value) -> tuple[float, float]:
    low, high = value
    return float(low), float(high)


def _check_pairs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """:func:`voxmetric.evaluate.metrics._check`, its errors as :class:`CalibrationError`."""
    try:
        return _check(scores, labels)
    except ScoresError as error:
        raise CalibrationError(f"calibration pairs: {error}") from None


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


def calibrate_from_scores(scores, labels, target_far: float | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
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
