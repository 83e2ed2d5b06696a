"""Verification metrics: DET curve, EER (with a bootstrap confidence interval), minDCF.

Conventions used throughout:

* ``scores``: ``(trials,)`` floats, higher means "more likely the same speaker";
* ``labels``: ``(trials,)`` 1 / ``True`` for a target trial (same speaker), 0 / ``False``
  for a non-target trial;
* a trial is *accepted* at threshold ``t`` when ``score >= t``. So
  ``P_miss(t) = FRR(t) = #{targets with score < t} / #targets`` and
  ``P_fa(t) = FAR(t) = #{non-targets with score >= t} / #non-targets``;
* rates are fractions in [0, 1], never percentages.

Every function sorts the scores once (``O(n log n)``); equal scores are grouped so
that a threshold never splits trials with the same score. Where the DET curve is
evaluated, the candidate thresholds are the distinct scores plus one just above the
highest score (everything rejected).
"""

from __future__ import annotations

import numpy as np

from ..errors import ScoresError, VoxmetricError

DEFAULT_P_TARGETS = (0.01, 0.05)
"""P_target values of the VoxCeleb / NIST SRE style minDCF (C_miss = C_fa = 1)."""

DEFAULT_N_BOOTSTRAP = 1000
"""Bootstrap replicates of every confidence interval voxmetric reports, unless told otherwise."""


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to ``(float64 scores, bool labels)``, both ``(trials,)``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ScoresError(
            f"scores and labels must be two (trials,) arrays of equal length, "
            f"got shapes {scores.shape} and {labels.shape}"
        )
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            bad = labels[~np.isin(labels, (0, 1))][0]
            raise ScoresError(f"labels must be 0/1 or True/False, got {bad!r}")
        labels = labels.astype(bool)
    if not np.isfinite(scores).all():
        where = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ScoresError(f"score of trial {where + 1} is {scores[where]}; scores must be finite")
    n_target = int(labels.sum())
    if n_target == 0 or n_target == labels.size:
        missing = "target (same-speaker)" if n_target == 0 else "non-target (different-speaker)"
        raise ScoresError(
            f"{labels.size} trials contain no {missing} trial; EER and minDCF need both kinds"
        )
    return scores, labels


def _sorted_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort once and find the groups of equal scores.

    Returns:
        order: ``(trials,)`` stable ascending argsort of ``scores``.
        starts: ``(groups + 1,)`` positions in the sorted order where each group of
            equal scores starts, followed by ``trials`` (the "reject all" point).
        thresholds: ``(groups + 1,)`` the distinct scores, then the next float above
            the highest score.
    """
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    thresholds = np.r_[ordered[starts], np.nextafter(ordered[-1], np.inf)]
    return order, np.r_[starts, ordered.size], thresholds


def _rates(cum_target: np.ndarray, cum_nontarget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(far, frr)`` from counts of targets / non-targets *below* each threshold.

    Both inputs are ``(..., points)`` with the total in the last column.
    """
    n_target = cum_target[..., -1:]
    n_nontarget = cum_nontarget[..., -1:]
    frr = cum_target / n_target
    far = (n_nontarget - cum_nontarget) / n_nontarget
    return far, frr


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False acceptance and false rejection rates at every distinct threshold.

    Args:
        scores: ``(trials,)`` scores.
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.

    Returns:
        ``(far, frr, thresholds)``, three ``(points,)`` arrays with
        ``points = distinct scores + 1``. ``thresholds`` ascend: the first is the
        lowest score (everything accepted: ``far = 1, frr = 0``), the last is just
        above the highest score (everything rejected: ``far = 0, frr = 1``).
        ``far`` never increases and ``frr`` never decreases along the curve.

    Raises:
        ScoresError: no target or no non-target trial, non-finite scores, bad labels.
    """
    scores, labels = _check(scores, labels)
    order, starts, thresholds = _sorted_groups(scores)
    sorted_labels = labels[order]
    cum_target = np.r_[0, np.cumsum(sorted_labels)][starts]
    cum_nontarget = starts - cum_target
    far, frr = _rates(cum_target, cum_nontarget)
    return far, frr, thresholds


def _eer_from_curve(far: np.ndarray, frr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EER where the piecewise-linear DET curve crosses ``far == frr``.

    ``far`` and ``frr`` are ``(..., points)`` curves as returned by :func:`det_curve`
    (batched over leading axes). ``frr - far`` rises from -1 to +1 along the curve; with
    ``i`` the first point where it is ``>= 0``, the EER is the intersection of the
    segment from point ``i - 1`` to point ``i`` with the line ``far == frr``:
    ``alpha = d[i-1] / (d[i-1] - d[i])`` and ``eer = far[i-1] + alpha (far[i] - far[i-1])``.

    Returns:
        ``(eer, i, alpha)``, each shaped like the leading axes.
    """
    difference = frr - far
    # frr - far is non-decreasing, so the count of negative entries is the first index >= 0;
    # it is at least 1 (the first point is -1) and at most points - 1 (the last is +1).
    i = np.count_nonzero(difference < 0, axis=-1)[..., None]
    d_before = np.take_along_axis(difference, i - 1, axis=-1)
    d_after = np.take_along_axis(difference, i, axis=-1)
    alpha = d_before / (d_before - d_after)
    far_before = np.take_along_axis(far, i - 1, axis=-1)
    far_after = np.take_along_axis(far, i, axis=-1)
    eer = far_before + alpha * (far_after - far_before)
    return eer[..., 0], i[..., 0], alpha[..., 0]


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate: the operating point where FAR equals FRR.

    The DET curve of a finite trial list is a staircase, so FAR and FRR are rarely
    exactly equal at any threshold. We interpolate linearly between the last DET point
    with ``frr < far`` and the first with ``frr >= far`` (the segment between them,
    intersected with the line ``far == frr``), and interpolate the threshold the same
    way. Equal scores are grouped first, so ties never favour either kind of trial.

    Args:
        scores: ``(trials,)`` scores.
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.

    Returns:
        ``(eer, threshold)``: the EER as a fraction (0.0394 for 3.94 %) and the
        interpolated score threshold where it is reached.

    Raises:
        ScoresError: no target or no non-target trial, non-finite scores, bad labels.
    """
    far, frr, thresholds = det_curve(scores, labels)
    value, i, alpha = _eer_from_curve(far, frr)
    i, alpha = int(i), float(alpha)
    threshold = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])
    return float(value), float(threshold)


def eer_confidence_interval(
    scores, labels, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap confidence interval of the EER, resampling trials.

    Stratified percentile bootstrap: each replicate draws ``#targets`` target trials
    and ``#non-targets`` non-target trials with replacement (so both counts stay as
    in the list), computes its EER as :func:`eer` does, and the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the replicates.
    Trials are treated as independent (the seed paper's assumption); speaker-level
    correlation would widen the interval.

    A replicate is a vector of draw counts per trial, so the scores are sorted once
    and each replicate's DET curve is a cumulative sum of counts in that order
    (1000 replicates of 40k trials take about a second).

    Args:
        scores: ``(trials,)`` scores.
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.
        n_bootstrap: number of bootstrap replicates.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the random generator; equal inputs and seed give equal output.

    Returns:
        ``(low, high)`` EER bounds as fractions.
    """
    if n_bootstrap < 1:
        raise ScoresError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ScoresError(f"confidence must be in (0, 1), got {confidence}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ScoresError(f"seed must be a non-negative integer, got {seed!r}")
    scores, labels = _check(scores, labels)
    order, starts, _ = _sorted_groups(scores)
    sorted_labels = labels[order]
    rng = np.random.default_rng(seed)
    # ~8 bytes x trials per replicate and per temporary: chunk to bound memory (~100 MB).
    chunk = max(1, min(n_bootstrap, 2_000_000 // scores.size))
    eers = [
        _bootstrap_eers(sorted_labels, starts, min(chunk, n_bootstrap - done), rng)
        for done in range(0, n_bootstrap, chunk)
    ]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(eers), [tail, 1.0 - tail])
    return float(low), float(high)


def _resample_counts(positions: np.ndarray, size: int, replicates: int, rng) -> np.ndarray:
    """``(replicates, size)`` draw counts of ``positions`` resampled with replacement.

    Row ``r`` holds, at column ``positions[k]``, how often trial ``k`` was drawn.
    """
    draws = rng.integers(0, positions.size, size=(replicates, positions.size))
    flat = (positions[draws] + size * np.arange(replicates)[:, None]).ravel()
    return np.bincount(flat, minlength=replicates * size).reshape(replicates, size)


def _bootstrap_eers(sorted_labels, starts, replicates: int, rng) -> np.ndarray:
    """EERs of ``replicates`` stratified resamples; trials given in ascending score order."""
    size = sorted_labels.size
    target_counts = _resample_counts(np.flatnonzero(sorted_labels), size, replicates, rng)
    all_counts = target_counts + _resample_counts(np.flatnonzero(~sorted_labels), size, replicates, rng)
    zero = np.zeros((replicates, 1), dtype=np.int64)
    cum_target = np.concatenate([zero, np.cumsum(target_counts, axis=1)], axis=1)[:, starts]
    cum_all = np.concatenate([zero, np.cumsum(all_counts, axis=1)], axis=1)[:, starts]
    far, frr = _rates(cum_target, cum_all - cum_target)
    return _eer_from_curve(far, frr)[0]


def min_dcf(
    scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE), minimised over thresholds.

    The detection cost at threshold ``t`` is (NIST 2016 Speaker Recognition Evaluation
    Plan, section 3, equation 2)::

        C_det(t) = C_miss * P_miss(t) * P_target + C_fa * P_fa(t) * (1 - P_target)

    and it is normalised by the cost of the best system that ignores its input (accept
    everything or reject everything)::

        C_default = min(C_miss * P_target, C_fa * (1 - P_target))

    so a value of 1 is no better than a constant decision, and the value is comparable
    across P_target (SRE16 plan, equations 3-4, which divide by ``C_miss * P_target``:
    the same as ``C_default`` whenever ``C_miss * P_target <= C_fa * (1 - P_target)``,
    true for every P_target <= 0.5 with equal costs; Kaldi's ``compute_min_dcf.py``
    uses the ``min``). This is the "minDCF" of VoxCeleb / VoxSRC results (P_target 0.01 or
    0.05, C_miss = C_fa = 1). The minimum is taken over every distinct score and the
    reject-all threshold; it is the *minimum* (oracle threshold), not the actual DCF at
    a threshold fixed beforehand.

    Args:
        scores: ``(trials,)`` scores.
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.
        p_target: prior probability of a target trial, in (0, 1).
        c_miss: cost of a miss (false rejection).
        c_fa: cost of a false alarm (false acceptance).

    Returns:
        ``(min_dcf, threshold)``: the normalised minimum cost and the lowest threshold
        reaching it.
    """
    if not 0.0 < p_target < 1.0:
        raise ScoresError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ScoresError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")
    far, frr, thresholds = det_curve(scores, labels)
    cost = c_miss * frr * p_target + c_fa * far * (1.0 - p_target)
    best = int(np.argmin(cost))
    default_cost = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost[best] / default_cost), float(thresholds[best])


def evaluate_scores(
    scores,
    labels,
    p_targets: tuple[float, ...] = DEFAULT_P_TARGETS,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """All the metrics of one trial list, ready for JSON.

    Args:
        scores: ``(trials,)`` scores.
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.
        p_targets: P_target values of the minDCF (C_miss = C_fa = 1).
        n_bootstrap: bootstrap replicates of the EER interval; 0 skips it.
        seed: seed of the bootstrap.
        confidence: coverage of the EER interval.

    Returns:
        ``{"eer", "eer_ci": [low, high] | None, "eer_threshold", "confidence",
        "n_bootstrap", "min_dcf": {p_target: {"min_dcf", "threshold"}}, "n_target",
        "n_nontarget"}``. Rates are fractions, minDCF values normalised (see
        :func:`min_dcf`); ``min_dcf`` is keyed by the float P_target (``0.01``), which
        ``json.dump`` writes as the string ``"0.01"``.
    """
    scores, labels = _check(scores, labels)
    value, threshold = eer(scores, labels)
    if n_bootstrap < 0:
        raise ScoresError(f"n_bootstrap must be 0 (no interval) or more, got {n_bootstrap}")
    interval = None
    if n_bootstrap > 0:
        interval = list(eer_confidence_interval(scores, labels, n_bootstrap, confidence, seed))
    dcfs = {}
    for p_target in p_targets:
        cost, dcf_threshold = min_dcf(scores, labels, p_target)
        dcfs[float(p_target)] = {"min_dcf": cost, "threshold": dcf_threshold}
    return {
        "eer": value,
        "eer_ci": interval,
        "eer_threshold": threshold,
        "confidence": confidence,
        "n_bootstrap": n_bootstrap,
        "min_dcf": dcfs,
        "n_target": int(labels.sum()),
        "n_nontarget": int((~labels).sum()),
    }
