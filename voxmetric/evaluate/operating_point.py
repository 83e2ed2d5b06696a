"""Calibrating on labelled pairs: the LLR map, the decision threshold and their uncertainty.

Calibrating on a user's labelled pairs (:func:`calibrate_from_scores`, saved as a
:class:`CalibrationResult` JSON file) also picks the decision threshold:

* at the equal error rate point (default; :func:`voxmetric.evaluate.metrics.eer`, FAR
  and FRR interpolated between the DET points either side), or
* for a target false acceptance rate: the lowest threshold whose FAR on the pairs is at
  most ``target_far`` (a trial is accepted when ``score >= threshold``).

The LLR fit on a user's pairs is regularised (:class:`CalibrationPrior`): a Gaussian
prior centred on the model's shipped calibration when it has one, worth a fixed number
of pairs, so that a handful of perfectly separated pairs gives a bounded slope close to
the reference instead of a near-infinite one; with hundreds of pairs the data decide.

The uncertainty of the threshold is a stratified percentile bootstrap interval (the
method of :func:`voxmetric.evaluate.metrics.eer_confidence_interval`): each replicate
resamples the target and the non-target pairs with replacement, keeping both counts,
and recomputes the EER and the threshold; the interval is the 2.5 % and 97.5 %
quantiles. A bootstrap of a few pairs is far too narrow (6 separated pairs: every
replicate has EER 0), so the error rates also get exact binomial (Clopper-Pearson)
intervals: the false acceptance and false rejection rates at the threshold on their
pair counts, and the EER as an error count on the smaller class; the reported EER
interval is the union of that and the bootstrap one. Pairs are treated as independent;
pairs sharing recordings or speakers make the true interval wider.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import CalibrationError, ScoresError
from ..fileio import atomic_open
from .calibration import Calibration, CalibrationPrior, fit_calibration
from .metrics import DEFAULT_N_BOOTSTRAP, _check, det_curve, eer

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
        far / frr: error rates of ``threshold`` on the pairs; ``far_ci`` / ``frr_ci`` their
            exact binomial (Clopper-Pearson) intervals.
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
    far_ci: tuple[float, float] | None = None
    frr_ci: tuple[float, float] | None = None

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
            "far_ci": None if self.far_ci is None else list(self.far_ci),
            "frr_ci": None if self.frr_ci is None else list(self.frr_ci),
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
        except IsADirectoryError:
            raise CalibrationError(f"{path}: is a directory, not a calibration file") from None
        except OSError as error:
            raise CalibrationError(f"{path}: cannot read the calibration file ({error.strerror or error})") from None
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
                far_ci=None if data.get("far_ci") is None else _pair(data["far_ci"]),
                frr_ci=None if data.get("frr_ci") is None else _pair(data["frr_ci"]),
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


def clopper_pearson(errors: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact binomial interval of a rate: ``errors`` out of ``trials`` (Clopper & Pearson 1934).

    Never narrower than the truth whatever the count: 0 errors in 3 trials gives (0, 0.71).
    """
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = 0.0 if errors == 0 else float(beta.ppf(tail, errors, trials - errors + 1))
    high = 1.0 if errors == trials else float(beta.ppf(1 - tail, errors + 1, trials - errors))
    return low, high


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


def check_options(target_far: float | None, n_bootstrap: int) -> None:
    """The options of :func:`calibrate_from_scores`; callers that embed first check them before.

    Raises:
        CalibrationError: ``target_far`` outside (0, 1), or ``n_bootstrap`` below 1.
    """
    if target_far is not None and not 0 < target_far < 1:
        raise CalibrationError(f"target_far must be between 0 and 1 (exclusive), got {target_far}")
    if n_bootstrap < 1:
        raise CalibrationError(f"n_bootstrap must be at least 1, got {n_bootstrap}")


def calibrate_from_scores(scores, labels, target_far: float | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
                          seed: int = 0, prior: float = 0.5, model: str | None = None,
                          reference: Calibration | None = None,
                          regularization: "CalibrationPrior | None | bool" = True) -> CalibrationResult:
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
        reference: the calibration the fit shrinks toward (the model's shipped one), or
            ``None`` (toward an uninformative LLR).
        regularization: ``True`` (default): ``CalibrationPrior(reference)``; a
            :class:`CalibrationPrior` to set the widths; ``False`` / ``None``: maximum
            likelihood (unbounded slope on separable pairs).

    Raises:
        CalibrationError: mismatched shapes, bad labels, a kind of pair missing, bad options.
        ScoresError: non-finite scores, or all scores equal.
    """
    scores, labels = _check_pairs(scores, labels)
    check_options(target_far, n_bootstrap)
    if regularization is True:
        regularization = CalibrationPrior(reference)
    calibration = fit_calibration(scores, labels, prior=prior, regularization=regularization or None)
    equal_error_rate = eer(scores, labels)[0]
    threshold = threshold_at(scores, labels, target_far)
    far, frr = _error_rates(scores, labels, threshold)
    eers, thresholds = _bootstrap(scores, labels, target_far, n_bootstrap, seed)
    tail = (1 - CONFIDENCE) / 2
    n_target = int(labels.sum())
    n_nontarget = labels.size - n_target
    # EER interval: bootstrap united with an exact binomial interval of the EER as an error
    # count on the smaller class (the bootstrap alone collapses to a point on few pairs).
    n_small = min(n_target, n_nontarget)
    exact = clopper_pearson(int(round(equal_error_rate * n_small)), n_small)
    boot_low, boot_high = np.quantile(eers, [tail, 1 - tail])
    return CalibrationResult(
        calibration=calibration, threshold=threshold,
        threshold_ci=_pair(np.quantile(thresholds, [tail, 1 - tail])),
        eer=equal_error_rate, eer_ci=(float(min(boot_low, exact[0])), float(max(boot_high, exact[1]))),
        far=far, frr=frr, target_far=target_far, n_target=n_target, n_nontarget=n_nontarget,
        model=model, n_bootstrap=n_bootstrap, warnings=_warnings(n_target, n_nontarget, target_far),
        far_ci=clopper_pearson(int(round(far * n_nontarget)), n_nontarget),
        frr_ci=clopper_pearson(int(round(frr * n_target)), n_target),
    )
