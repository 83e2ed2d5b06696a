"""EER, minDCF, bootstrap interval, DET plots and results files."""

import json

import numpy as np
import pytest

from voxmetric.errors import VoxmetricError
from voxmetric.evaluate.metrics import (
    det_curve,
    eer,
    eer_confidence_interval,
    evaluate_scores,
    min_dcf,
)
from voxmetric.evaluate.plots import plot_det, plot_score_histogram, plot_training_curves
from voxmetric.evaluate.report import markdown_table, write_results


def trials(targets, nontargets):
    scores = np.r_[targets, nontargets].astype(float)
    labels = np.r_[np.ones(len(targets)), np.zeros(len(nontargets))].astype(int)
    return scores, labels


def gaussian_trials(rng, n, separation):
    labels = rng.random(n) < 0.5
    return rng.standard_normal(n) + separation * labels, labels


def brute_force_min_dcf(scores, labels, p_target):
    """Normalised minDCF by looping over every threshold (accept when score >= t)."""
    targets, nontargets = scores[labels == 1], scores[labels == 0]
    best = np.inf
    for t in list(np.unique(scores)) + [np.inf]:
        p_miss = np.mean(targets < t)
        p_fa = np.mean(nontargets >= t)
        best = min(best, p_miss * p_target + p_fa * (1 - p_target))
    return best / min(p_target, 1 - p_target)


# ---------------------------------------------------------------- DET and EER


def test_det_curve_endpoints_and_monotonic(rng):
    scores, labels = gaussian_trials(rng, 500, 1.0)
    far, frr, thresholds = det_curve(scores, labels)
    assert (far[0], frr[0]) == (1.0, 0.0)
    assert (far[-1], frr[-1]) == (0.0, 1.0)
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0)
    assert np.all(np.diff(thresholds) > 0)
    assert thresholds[-1] > scores.max()


def test_eer_perfect_separation_is_zero():
    scores, labels = trials([0.9, 0.8, 0.7], [0.3, 0.2, 0.1])
    value, threshold = eer(scores, labels)
    assert value == 0.0
    assert 0.3 < threshold <= 0.7


def test_eer_identical_distributions_is_half(rng):
    scores = rng.standard_normal(40_000)
    labels = rng.random(40_000) < 0.5
    value, _ = eer(scores, labels)
    assert abs(value - 0.5) < 0.02


def test_eer_by_hand_exact_crossing():
    # targets 0.9 0.6 0.4, non-targets 0.5 0.3 0.1; accept when score >= t:
    #   t=0.1: FRR 0,   FAR 3/3      t=0.4: FRR 0,   FAR 1/3 (0.5 accepted)
    #   t=0.3: FRR 0,   FAR 2/3      t=0.5: FRR 1/3 (0.4 rejected), FAR 1/3
    # FRR == FAR = 1/3 exactly at t = 0.5.
    value, threshold = eer(*trials([0.9, 0.6, 0.4], [0.5, 0.3, 0.1]))
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.5)


def test_eer_by_hand_interpolated():
    # targets 0.9 0.6 0.4, non-targets 0.5 0.1:
    #   t=0.5: FRR 1/3, FAR 1/2 (d = FRR - FAR = -1/6)
    #   t=0.6: FRR 1/3, FAR 0   (d = +1/3)
    # crossing at alpha = (1/6) / (1/6 + 1/3) = 1/3 along the segment:
    #   EER = 1/2 + 1/3 (0 - 1/2) = 1/3, threshold = 0.5 + 1/3 * 0.1.
    value, threshold = eer(*trials([0.9, 0.6, 0.4], [0.5, 0.1]))
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.5 + 0.1 / 3)


def test_eer_groups_tied_scores():
    # A target and a non-target tie at 0.5; a threshold cannot separate them:
    #   t=0.5: FRR 0, FAR 1/2;  t=0.7: FRR 1/2, FAR 0  -> midpoint: EER 1/4 at t=0.6.
    # Splitting the tie (target counted first or last) would give 0 or 1/2.
    scores, labels = trials([0.7, 0.5], [0.5, 0.2])
    assert eer(scores, labels) == pytest.approx((0.25, 0.6))
    # order of tied trials in the input does not matter
    assert eer(scores[::-1], labels[::-1]) == pytest.approx((0.25, 0.6))
    # all scores tied: a coin flip
    assert eer(*trials([0.5, 0.5], [0.5, 0.5, 0.5]))[0] == pytest.approx(0.5)


def test_errors_name_the_problem():
    with pytest.raises(VoxmetricError, match="no non-target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(VoxmetricError, match="no target"):
        min_dcf([0.1, 0.2], [0, 0], 0.01)
    with pytest.raises(VoxmetricError, match="labels"):
        eer([0.1, 0.2], [1, 2])
    with pytest.raises(VoxmetricError, match="finite"):
        eer([0.1, np.nan], [1, 0])
    with pytest.raises(VoxmetricError, match="shapes"):
        eer([0.1, 0.2, 0.3], [1, 0])


# ---------------------------------------------------------------- minDCF


def test_min_dcf_by_hand():
    # targets 0.8 0.5; non-targets 0.6 and 39 scores below 0.2 (40 in all).
    # Normalised cost (C_miss = C_fa = 1, P_target <= 0.5): P_miss + (1 - p) / p * P_fa.
    #   t=0.5:  P_miss 0,   P_fa 1/40 -> p=0.01: 99/40 = 2.475; p=0.05: 19/40 = 0.475
    #   t=0.8:  P_miss 1/2, P_fa 0    -> 0.5 for both
    #   reject all: P_miss 1          -> 1
    #   t below 0.5: P_fa >= 2/40, P_miss 0 -> more than the t=0.5 cost
    scores, labels = trials([0.8, 0.5], np.r_[0.6, np.linspace(0.0, 0.19, 39)])
    assert min_dcf(scores, labels, 0.01) == pytest.approx((0.5, 0.8))
    assert min_dcf(scores, labels, 0.05) == pytest.approx((0.475, 0.5))


def test_min_dcf_matches_brute_force(rng):
    scores, labels = gaussian_trials(rng, 300, 2.0)
    scores = np.round(scores, 1)  # plenty of ties
    for p_target in (0.01, 0.05, 0.5):
        value, _ = min_dcf(scores, labels, p_target)
        assert value == pytest.approx(brute_force_min_dcf(scores, labels.astype(int), p_target))


def test_min_dcf_costs_and_bounds(rng):
    scores, labels = gaussian_trials(rng, 1000, 0.0)
    assert min_dcf(scores, labels, 0.01)[0] <= 1.0  # never worse than a constant decision
    with pytest.raises(VoxmetricError, match="p_target"):
        min_dcf(scores, labels, 1.5)
    scores, labels = trials([0.9, 0.4], [0.5, 0.1])
    # C_miss 2, C_fa 1, p 0.5: default cost min(2 * 0.5, 1 * 0.5) = 0.5. Costs:
    #   t=0.1 (accept all): 0.5;  t=0.4: P_fa 1/2 -> 0.25;  t=0.5: 0.5 + 0.25 = 0.75;
    #   t=0.9: P_miss 1/2 -> 0.5;  reject all: 1.  Minimum 0.25 -> normalised 0.5 at t=0.4.
    assert min_dcf(scores, labels, 0.5, c_miss=2.0) == pytest.approx((0.5, 0.4))


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_estimate_and_is_seeded(rng):
    scores, labels = gaussian_trials(rng, 4000, 3.5)
    low, high = eer_confidence_interval(scores, labels, n_bootstrap=300, seed=1)
    assert low < eer(scores, labels)[0] < high
    assert eer_confidence_interval(scores, labels, n_bootstrap=300, seed=1) == (low, high)
    assert eer_confidence_interval(scores, labels, n_bootstrap=300, seed=2) != (low, high)


def test_bootstrap_interval_narrows_with_more_trials(rng):
    small = eer_confidence_interval(*gaussian_trials(rng, 1000, 3.0), n_bootstrap=300)
    large = eer_confidence_interval(*gaussian_trials(rng, 16000, 3.0), n_bootstrap=300)
    assert large[1] - large[0] < 0.5 * (small[1] - small[0])


def test_bootstrap_keeps_class_counts(rng):
    # One target among many non-targets: a resample without stratification could
    # draw no target at all; stratified resampling always has exactly one.
    scores, labels = trials([0.9], rng.random(50) * 0.95)
    low, high = eer_confidence_interval(scores, labels, n_bootstrap=200)
    assert 0.0 <= low <= high <= 0.1


def test_evaluate_scores_fields(rng):
    scores, labels = gaussian_trials(rng, 2000, 3.0)
    result = evaluate_scores(scores, labels, n_bootstrap=100)
    assert result["eer"] == pytest.approx(eer(scores, labels)[0])
    assert result["eer_ci"][0] <= result["eer"] <= result["eer_ci"][1]
    assert set(result["min_dcf"]) == {0.01, 0.05}
    assert result["min_dcf"][0.01]["min_dcf"] == pytest.approx(min_dcf(scores, labels, 0.01)[0])
    assert result["n_target"] + result["n_nontarget"] == 2000
    assert evaluate_scores(scores, labels, n_bootstrap=0)["eer_ci"] is None
    json.dumps(result)


# ---------------------------------------------------------------- plots and report


def is_png(path):
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path, rng):
    good = gaussian_trials(rng, 2000, 3.0)
    plot_det({"good": good, "poor": gaussian_trials(rng, 2000, 1.0)}, tmp_path / "det.png")
    plot_score_histogram(*good, tmp_path / "hist.png")
    assert is_png(tmp_path / "det.png") and is_png(tmp_path / "hist.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.png", "hist.png"]  # no temp files


def test_training_curves_plot(tmp_path):
    log = tmp_path / "metrics.jsonl"
    records = [{"batch": 10, "loss": 3.0}, {"batch": 20, "loss": 2.0},
               {"epoch": 1, "batch": 20, "train_loss": 2.5, "val_eer": 20.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    plot_training_curves({"aam": log}, tmp_path / "curves.png")
    assert is_png(tmp_path / "curves.png")
    log.write_text("{not json\n")
    with pytest.raises(VoxmetricError, match="line 1"):
        plot_training_curves({"aam": log}, tmp_path / "curves.png")


def test_write_results(tmp_path, rng):
    result = evaluate_scores(*gaussian_trials(rng, 1000, 3.0), n_bootstrap=50)
    write_results({"cosine": result, "s-norm": result}, tmp_path / "r.json", tmp_path / "r.md")
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded["cosine"]["eer"] == pytest.approx(result["eer"])
    table = (tmp_path / "r.md").read_text()
    assert "| cosine | " in table and "minDCF 0.01" in table and "minDCF 0.05" in table
    assert f"{result['eer'] * 100:.2f}" in table and str(result["n_target"]) in table
    # the JSON round trip (string keys) renders the same table
    assert markdown_table(loaded) == table
