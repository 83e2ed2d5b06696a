"""Score calibration: cosine scores -> log-likelihood ratios, and decision thresholds.

A raw cosine score says which of two trials is more likely same-speaker, not how
likely. Linear logistic calibration (Brümmer & du Preez, "Application-independent
evaluation of speaker detection", Computer Speech and Language 20(2-3), 2006; the
FoCal toolkit) maps a score ``s`` to a natural-log likelihood ratio

    llr(s) = scale * s + offset,   llr = log p(s | same speaker) / p(s | different speakers),

fitted by minimising the prior-weighted cross-entropy (FoCal's variant, P = ``prior``):

    C(scale, offset) = P / N_tar * sum_tar log(1 + exp(-(llr_i + logit P)))
                     + (1 - P) / N_non * sum_non log(1 + exp(llr_j + logit P))

which is convex in ``(scale, offset)``. With few pairs the minimum can sit at (or near)
an infinite slope: scores that separate the classes perfectly make every finite slope
improvable. :class:`CalibrationPrior` adds a Gaussian prior on the parameters (MAP
estimate), centred on a reference calibration (the model's shipped one) or on "no
information" (slope 0, LLR 0), worth a fixed number of pairs: its weight in the
objective is ``1 / N_eff`` that of the data, so it fades as pairs accumulate. With the LLR, the Bayes decision for a target
prior ``P_target`` and equal costs is ``accept if llr > -logit(P_target)``; see
:meth:`Calibration.bayes_threshold`. :func:`cllr` measures how good an LLR is
(0 perfect, 1 = no information, above 1 = worse than saying nothing).

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
        for name in ("scale", "offset"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"calibration {name} must be a finite number, got {value!r}")
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


@dataclass(frozen=True)
class CalibrationPrior:
    """Gaussian prior on the calibration, for fits on few pairs (MAP instead of ML).

    Parameters live in standardised score units (``x = (score - mean) / std`` of the pairs'
    scores): ``llr = a x + b``, so the prior means the same for cosine, PLDA or any score
    scale. ``a`` (LLR change per standard deviation of the scores) ~ N(``a_ref``,
    ``slope_sd``), ``b`` (LLR at the mean score) ~ N(``b_ref``, ``offset_sd``), where
    ``(a_ref, b_ref)`` is ``reference`` expressed in those units, or ``(0, 0)`` (an
    uninformative LLR) without one. The penalty added to the objective is
    ``((a - a_ref)^2 / slope_sd^2 + (b - b_ref)^2 / offset_sd^2) / (2 N_eff)``, with
    ``N_eff = 4 N_tar N_non / (N_tar + N_non)`` (the number of pairs when balanced):
    the cross-entropy is a mean over pairs, so this is exactly a Gaussian prior on the
    summed likelihood, and its pull shrinks as 1 / pairs.

    The defaults are weak: without a reference, a slope within +-2 x 4 nats per score
    standard deviation and a mean-score LLR within +-2 x 4 nats; with one, the same
    widths around it (a fitted calibration on real data has ``a`` of 2-6).
    """

    reference: "Calibration | None" = None
    slope_sd: float = 4.0
    offset_sd: float = 4.0

    def __post_init__(self):
        for name in ("slope_sd", "offset_sd"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"CalibrationPrior {name} must be a positive number, got {value!r}")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _check_prior(prior: float) -> None:
    if not 0 < prior < 1:
        raise ValueError(f"prior must be strictly between 0 and 1, got {prior}")


def fit_calibration(scores, labels, prior: float = 0.5, max_iterations: int = 100,
                    regularization: CalibrationPrior | None = None) -> Calibration:
    """Fit ``llr = scale * score + offset`` by prior-weighted logistic regression (module docstring).

    Newton's method with step halving on the (convex) objective, in standardised score
    units for conditioning.

    Args:
        scores: ``(trials,)`` finite scores, higher = more likely same speaker.
        labels: ``(trials,)`` 1 / True for target (same-speaker) trials, 0 / False otherwise.
        prior: the target prior ``P`` the objective is weighted for (0.5 weights both
            classes equally whatever their counts).
        max_iterations: Newton steps at most (it converges in under 20 on real scores).
        regularization: a :class:`CalibrationPrior` (MAP fit, bounded slope on few
            pairs), or ``None``: maximum likelihood (with a negligible ridge that only
            keeps perfectly separated scores finite, and steep).

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
    # Quadratic penalty sum_k precision_k (params_k - centre_k)^2 (params: standardised a, b).
    if regularization is None:
        centre, precision = np.zeros(2), np.array([_RIDGE, 0.0])
    else:
        n_target, n_nontarget = labels.sum(), (~labels).sum()
        n_eff = 4.0 * n_target * n_nontarget / (n_target + n_nontarget)
        ref = regularization.reference
        centre = np.zeros(2) if ref is None else np.array([ref.scale * std, ref.offset + ref.scale * mean])
        precision = 0.5 / n_eff / np.array([regularization.slope_sd, regularization.offset_sd]) ** 2

    def objective(params: np.ndarray) -> float:
        z = params[0] * x + params[1] + shift
        return float(weight @ np.logaddexp(0.0, -sign * z) + precision @ (params - centre) ** 2)

    params = centre.copy()
    value = objective(params)
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(max_iterations):
        z = params[0] * x + params[1] + shift
        p_wrong = expit(-sign * z)  # probability given to the wrong class: the gradient factor
        gradient = design.T @ (weight * -sign * p_wrong) + 2 * precision * (params - centre)
        curvature = weight * p_wrong * (1 - p_wrong)
        hessian = (design * curvature[:, None]).T @ design + np.diag(2 * precision + np.array([0.0, 1e-12]))
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
    if target_far is not None and not 0 < target_far < 1:
        raise CalibrationError(f"target_far must be between 0 and 1 (exclusive), got {target_far}")
    if n_bootstrap < 1:
        raise CalibrationError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
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
