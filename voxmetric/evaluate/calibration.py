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

Calibrating on a user's labelled pairs (LLR map, decision threshold and their
intervals, the calibration JSON file) is :mod:`voxmetric.evaluate.operating_point`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from ..errors import ArgumentError, CalibrationError, ScoresError
from .metrics import _check

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
                raise ArgumentError(f"calibration {name} must be a finite number, got {value!r}")
        if self.scale <= 0:
            raise ArgumentError(f"calibration scale must be positive (higher score = more likely same speaker), "
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
            raise ArgumentError(f"calibration must be {{'scale': float, 'offset': float}}, got {data!r}")
        values = []
        for key in ("scale", "offset"):
            try:
                value = float(data[key])
            except (TypeError, ValueError):
                value = math.nan
            if isinstance(data[key], bool) or not math.isfinite(value):
                raise ArgumentError(f"calibration {key} must be a finite number, got {data[key]!r}")
            values.append(value)
        return cls(*values)


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
                raise ArgumentError(f"CalibrationPrior {name} must be a positive number, got {value!r}")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _check_prior(prior: float) -> None:
    if not 0 < prior < 1:
        raise ArgumentError(f"prior must be strictly between 0 and 1, got {prior}")


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
        CalibrationError: the fitted slope is not positive (same-speaker pairs score lower).
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
    if not slope > 0:
        raise CalibrationError(f"the same-speaker pairs do not score higher than the others (fitted LLR slope "
                               f"{slope / std:.3g} per score unit): these scores cannot be calibrated")
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

