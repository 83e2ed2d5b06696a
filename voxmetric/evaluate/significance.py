"""Statistics of a multi-seed comparison: intervals over seeds and trials, paired tests, Holm.

A comparison trains every system (loss) with ``S`` seeds and scores each of the
``S`` models on the *same* trial list. Two sources of variability then matter:
which seeds were drawn (initialisation and batch order: "luck") and which trials
were drawn (the test set is a sample). The functions here account for both with
one **two-level bootstrap**; one replicate is:

1. draw ``S`` seed indices with replacement (seed level);
2. draw one stratified resample of the trials: ``#targets`` target trials and
   ``#non-targets`` non-target trials, each with replacement (trial level). The
   same trial resample is applied to every drawn seed (and, in paired tests, to
   both systems): all models were scored on the same trials, so their
   trial-sampling errors are shared, and resampling trials independently per
   seed would understate them;
3. compute each drawn seed's EER (and minDCF) on the resampled trials exactly as
   :func:`voxmetric.evaluate.metrics.eer` / ``min_dcf`` do (interpolated DET
   crossing; minimum normalised cost over thresholds), and average over the
   ``S`` drawn seeds.

The interval is the percentile interval of the replicates' means. With few seeds
(3-5) the seed level is resampled from very few values, so the interval is, if
anything, too narrow for the seed part: more seeds make it more trustworthy.

Pairwise tests (:func:`paired_bootstrap_test`) use the same replicates on the
difference ``mean_s EER(A, s) - mean_s EER(B, s)`` with the seed indices shared by
A and B (seed ``s`` of A and of B saw the same initialisation and batches); the
two-sided p-value is ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))`` over the
replicates, with the +1 correction ``(count + 1) / (replicates + 1)``: the test
that inverts the percentile interval of the difference. Identical systems give
``d = 0`` in every replicate, hence ``p = 1``. The p-values of all pairs are then
corrected for multiple comparisons by :func:`holm` (Holm 1979).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ScoresError
from .metrics import DEFAULT_N_BOOTSTRAP, _check, _eer_from_curve, _rates, eer, min_dcf

DEFAULT_ALPHA = 0.05
"""Family-wise significance level of the pairwise tests (after Holm's correction)."""

DCF_P_TARGET = 0.01
"""P_target of the minDCF reported per seed and bootstrapped (C_miss = C_fa = 1)."""

_MAX_CELLS = 2_000_000
"""Replicates x trials per chunk of bootstrap work (bounds memory to ~100 MB)."""


def _check_systems(scores_by_seed: Sequence, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(S, trials)`` float64 scores and ``(trials,)`` bool labels, validated."""
    if len(scores_by_seed) == 0:
        raise ScoresError("no seed's scores given")
    matrix = np.asarray([np.asarray(s, dtype=np.float64) for s in scores_by_seed])
    if matrix.ndim != 2:
        raise ScoresError("every seed's scores must be a (trials,) array of the same length")
    checked = [_check(row, labels) for row in matrix]
    return matrix, checked[0][1]


def _trial_counts(labels: np.ndarray, replicates: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(replicates, trials)`` draw counts of a stratified trial resample: targets, all."""
    size = labels.size
    rows = np.arange(replicates)[:, None] * size

    def counts(positions: np.ndarray) -> np.ndarray:
        draws = positions[rng.integers(0, positions.size, size=(replicates, positions.size))]
        return np.bincount((draws + rows).ravel(), minlength=replicates * size).reshape(replicates, size)

    targets = counts(np.flatnonzero(labels))
    return targets, targets + counts(np.flatnonzero(~labels))


def _metrics_under_counts(scores: np.ndarray, labels: np.ndarray, target_counts: np.ndarray,
                          all_counts: np.ndarray, p_target: float) -> tuple[np.ndarray, np.ndarray]:
    """EER and normalised minDCF of one system's ``(trials,)`` scores under each row of
    trial draw counts: two ``(replicates,)`` arrays (trials with equal scores grouped)."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.r_[np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]), ordered.size]
    zero = np.zeros((len(target_counts), 1), dtype=np.int64)
    cum_target = np.concatenate([zero, np.cumsum(target_counts[:, order], axis=1)], axis=1)[:, starts]
    cum_all = np.concatenate([zero, np.cumsum(all_counts[:, order], axis=1)], axis=1)[:, starts]
    far, frr = _rates(cum_target, cum_all - cum_target)
    cost = (frr * p_target + far * (1.0 - p_target)).min(axis=1) / min(p_target, 1.0 - p_target)
    return _eer_from_curve(far, frr)[0], cost


def _replicate_metrics(systems: Sequence[np.ndarray], labels: np.ndarray, n_bootstrap: int, seed: int,
                       p_target: float) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per system, ``(n_bootstrap, S)`` EERs and minDCFs of every seed under each replicate's
    trial resample, and the ``(n_bootstrap, S)`` seed draws shared by all systems."""
    n_seeds, size = systems[0].shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, size=(n_bootstrap, n_seeds))
    eers = [np.empty((n_bootstrap, n_seeds)) for _ in systems]
    dcfs = [np.empty((n_bootstrap, n_seeds)) for _ in systems]
    chunk = max(1, _MAX_CELLS // size)
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        target_counts, all_counts = _trial_counts(labels, stop - start, rng)
        for k, matrix in enumerate(systems):
            for s in range(n_seeds):
                eers[k][start:stop, s], dcfs[k][start:stop, s] = _metrics_under_counts(
                    matrix[s], labels, target_counts, all_counts, p_target)
    return eers, dcfs, seed_draws


def _drawn_means(values: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """``(replicates,)`` mean over each replicate's drawn seeds of ``(replicates, S)`` values."""
    return np.take_along_axis(values, seed_draws, axis=1).mean(axis=1)


def _check_bootstrap(n_bootstrap: int, confidence: float) -> None:
    if n_bootstrap < 1:
        raise ScoresError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ScoresError(f"confidence must be in (0, 1), got {confidence}")


def multi_seed_summary(scores_by_seed: Sequence, labels, n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
                       confidence: float = 0.95, seed: int = 0, p_target: float = DCF_P_TARGET) -> dict:
    """Per-seed EER and minDCF of one system, their means, and two-level bootstrap intervals.

    Args:
        scores_by_seed: ``S`` arrays of ``(trials,)`` scores, one per training seed, all
            on the trial list of ``labels`` (same order).
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.
        n_bootstrap: replicates of the two-level bootstrap (module docstring); 0 skips
            the intervals.
        confidence: coverage of the intervals.
        seed: seed of the bootstrap's generator.
        p_target: P_target of the minDCF.

    Returns:
        ``{"eer": [S], "min_dcf": [S], "mean_eer", "mean_min_dcf", "eer_ci": [low, high] |
        None, "min_dcf_ci": [low, high] | None, "n_seeds", "n_bootstrap", "confidence",
        "p_target"}``; rates as fractions.
    """
    matrix, labels = _check_systems(scores_by_seed, labels)
    per_seed_eer = [eer(row, labels)[0] for row in matrix]
    per_seed_dcf = [min_dcf(row, labels, p_target)[0] for row in matrix]
    result = {"eer": per_seed_eer, "min_dcf": per_seed_dcf, "mean_eer": float(np.mean(per_seed_eer)),
              "mean_min_dcf": float(np.mean(per_seed_dcf)), "eer_ci": None, "min_dcf_ci": None,
              "n_seeds": len(matrix), "n_bootstrap": int(n_bootstrap), "confidence": confidence,
              "p_target": p_target}
    if n_bootstrap:
        _check_bootstrap(n_bootstrap, confidence)
        (eers,), (dcfs,), draws = _replicate_metrics([matrix], labels, n_bootstrap, seed, p_target)
        tail = (1.0 - confidence) / 2.0
        for key, values in (("eer_ci", eers), ("min_dcf_ci", dcfs)):
            low, high = np.quantile(_drawn_means(values, draws), [tail, 1.0 - tail])
            result[key] = [float(low), float(high)]
    return result


def paired_bootstrap_test(scores_a: Sequence, scores_b: Sequence, labels,
                          n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0) -> dict:
    """Two-sided paired test of ``mean EER(A) == mean EER(B)`` over seeds and trials.

    ``scores_a[s]`` and ``scores_b[s]`` are seed ``s``'s scores of systems A and B on
    the same trials. Each replicate draws seed indices (shared by A and B) and one
    stratified trial resample (shared by every seed of A and B), and computes
    ``d* = mean EER(A) - mean EER(B)`` (module docstring).

    Returns:
        ``{"difference": mean EER(A) - mean EER(B) on the data (fraction), "p_value",
        "ci": [low, high] 95% percentile interval of d*, "n_bootstrap"}``.
    """
    a, labels = _check_systems(scores_a, labels)
    b, labels_b = _check_systems(scores_b, labels)
    if a.shape != b.shape or not np.array_equal(labels, labels_b):
        raise ScoresError(f"paired test: both systems need the same seeds and trials, got {a.shape} and {b.shape}")
    if n_bootstrap < 1:
        raise ScoresError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    difference = float(np.mean([eer(row, labels)[0] for row in a]) - np.mean([eer(row, labels)[0] for row in b]))
    (eers_a, eers_b), _, draws = _replicate_metrics([a, b], labels, n_bootstrap, seed, DCF_P_TARGET)
    d = _drawn_means(eers_a, draws) - _drawn_means(eers_b, draws)
    below = (np.count_nonzero(d <= 0) + 1) / (n_bootstrap + 1)
    above = (np.count_nonzero(d >= 0) + 1) / (n_bootstrap + 1)
    low, high = np.quantile(d, [0.025, 0.975])
    return {"difference": difference, "p_value": float(min(1.0, 2.0 * min(below, above))),
            "ci": [float(low), float(high)], "n_bootstrap": int(n_bootstrap)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With ``m`` p-values sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted value of
    the ``i``-th smallest is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a hypothesis is
    rejected at family-wise level alpha when its adjusted value is <= alpha (Holm,
    "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 1979).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ScoresError(f"p-values must be a list of numbers in [0, 1], got {list(p_values)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def pairwise_tests(systems: Mapping[str, Sequence], labels, n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
                   seed: int = 0, alpha: float = DEFAULT_ALPHA) -> list[dict]:
    """Paired test of every pair of systems, Holm-corrected over all pairs.

    Pairs are ordered so that ``a`` has the lower mean EER. Returns one record per pair:
    ``{"a", "b", "difference" (mean EER a - b, fraction), "ci", "p_value" (raw),
    "p_holm", "significant" (p_holm <= alpha)}``, sorted by ``p_holm`` then names.
    """
    names = list(systems)
    means = {name: float(np.mean([eer(s, labels)[0] for s in systems[name]])) for name in names}
    records = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = sorted((first, second), key=lambda name: (means[name], names.index(name)))
            test = paired_bootstrap_test(systems[a], systems[b], labels, n_bootstrap, seed)
            records.append({"a": a, "b": b, "difference": test["difference"], "ci": test["ci"],
                            "p_value": test["p_value"]})
    for record, adjusted in zip(records, holm([r["p_value"] for r in records]) if records else []):
        record["p_holm"] = adjusted
        record["significant"] = adjusted <= alpha
    return sorted(records, key=lambda r: (r["p_holm"], r["a"], r["b"]))


def _p_text(p: float, n_bootstrap: int) -> str:
    floor = 1.0 / (n_bootstrap + 1)
    if p <= 2 * floor:
        return f"p <= {2 * floor:.2g}"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def ranking_statements(tests: Sequence[dict], means: Mapping[str, float], n_bootstrap: int) -> list[str]:
    """Sentences that state the ranking only as far as the tests support it.

    One line per pair, best-ranked systems first: ``"aam < ce (p_Holm = 0.003)"`` when the
    Holm-corrected test is significant, ``"aam vs coco: not significant (p_Holm = 0.41)"``
    otherwise.
    """
    order = {name: rank for rank, name in enumerate(sorted(means, key=lambda n: means[n]))}
    lines = []
    for t in sorted(tests, key=lambda t: (order[t["a"]], order[t["b"]])):
        p = _p_text(t["p_holm"], n_bootstrap).replace("p ", "p_Holm ", 1)
        if t["significant"]:
            lines.append(f"{t['a']} < {t['b']} ({p})")
        else:
            lines.append(f"{t['a']} vs {t['b']}: not significant ({p})")
    return lines


def best_group(tests: Sequence[dict], means: Mapping[str, float]) -> list[str]:
    """The system with the lowest mean EER and every system not significantly worse than it."""
    best = min(means, key=lambda n: means[n])
    tied = {t["b"] for t in tests if t["a"] == best and not t["significant"]}
    tied |= {t["a"] for t in tests if t["b"] == best and not t["significant"]}
    return [best] + sorted(tied - {best}, key=lambda n: means[n])
