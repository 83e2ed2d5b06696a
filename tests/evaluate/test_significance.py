"""Multi-seed statistics: Holm, the paired bootstrap test and the two-level interval."""

import numpy as np
import pytest

from voxmetric.errors import ScoresError
from voxmetric.evaluate.metrics import eer, min_dcf
from voxmetric.evaluate.significance import (best_group, holm, multi_seed_summary, paired_bootstrap_test,
                                             pairwise_tests, ranking_statements)


def test_holm_matches_a_hand_computed_example():
    # m = 4. Sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max with
    # the running maximum 0.06). In input order [0.03, 0.01, 0.04, 0.02]:
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # The step-down cap at 1 and monotonicity: 0.5 x 2 = 1.0; 0.6 x 1 = 0.6 -> max(1.0, 0.6) = 1.0.
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])
    assert holm([0.001]) == pytest.approx([0.001])
    with pytest.raises(ScoresError):
        holm([0.2, 1.5])


def _system(rng, n_target, n_nontarget, separation, n_seeds=3):
    labels = np.r_[np.ones(n_target, bool), np.zeros(n_nontarget, bool)]
    scores = [np.where(labels, separation, 0.0) + rng.normal(0, 1, labels.size) for _ in range(n_seeds)]
    return scores, labels


def test_paired_test_separates_clearly_different_systems():
    rng = np.random.default_rng(0)
    good, labels = _system(rng, 200, 200, separation=4.0)
    bad, _ = _system(rng, 200, 200, separation=0.5)
    test = paired_bootstrap_test(good, bad, labels, n_bootstrap=200, seed=1)
    assert test["difference"] < -0.3
    assert test["p_value"] <= 2 / 201 + 1e-12  # every replicate has d < 0
    assert test["ci"][1] < 0


def test_paired_test_gives_p_one_for_identical_systems_and_large_p_for_equal_ones():
    rng = np.random.default_rng(0)
    scores, labels = _system(rng, 150, 150, separation=1.5)
    same = paired_bootstrap_test(scores, [s.copy() for s in scores], labels, n_bootstrap=100, seed=0)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    # Two systems drawn from the same distribution: no evidence of a difference.
    other, _ = _system(np.random.default_rng(5), 150, 150, separation=1.5)
    test = paired_bootstrap_test(scores, other, labels, n_bootstrap=300, seed=0)
    assert test["p_value"] > 0.2
    assert test == paired_bootstrap_test(scores, other, labels, n_bootstrap=300, seed=0)  # seeded


def test_multi_seed_summary_per_seed_values_and_interval():
    rng = np.random.default_rng(3)
    scores, labels = _system(rng, 100, 300, separation=2.0)
    summary = multi_seed_summary(scores, labels, n_bootstrap=300, seed=0)
    assert summary["eer"] == pytest.approx([eer(s, labels)[0] for s in scores])
    assert summary["min_dcf"] == pytest.approx([min_dcf(s, labels, 0.01)[0] for s in scores])
    assert summary["mean_eer"] == pytest.approx(np.mean(summary["eer"]))
    low, high = summary["eer_ci"]
    assert low < summary["mean_eer"] < high
    assert summary["min_dcf_ci"][0] <= summary["mean_min_dcf"] <= summary["min_dcf_ci"][1]
    assert multi_seed_summary(scores, labels, n_bootstrap=0)["eer_ci"] is None


def test_two_level_interval_is_wider_when_seeds_disagree():
    # Same trial noise, but the seeds of the second system differ much more from each other.
    rng = np.random.default_rng(7)
    labels = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    noise = rng.normal(0, 1, labels.size)
    steady = [np.where(labels, 2.0, 0.0) + noise + rng.normal(0, 0.05, labels.size) for _ in range(4)]
    erratic = [np.where(labels, sep, 0.0) + noise + rng.normal(0, 0.05, labels.size) for sep in (0.5, 1.5, 2.5, 3.5)]
    width = lambda scores: np.diff(multi_seed_summary(scores, labels, n_bootstrap=300)["eer_ci"])[0]
    assert width(erratic) > 2 * width(steady)


def test_one_seed_reduces_to_the_trial_bootstrap_and_a_hand_checkable_case():
    # 2 targets (0.9, 0.8) above 2 non-targets (0.1, 0.2): EER 0 for every resample.
    labels = np.array([1, 1, 0, 0])
    summary = multi_seed_summary([np.array([0.9, 0.8, 0.1, 0.2])], labels, n_bootstrap=50)
    assert summary["eer"] == [0.0] and summary["eer_ci"] == [0.0, 0.0]
    assert summary["min_dcf_ci"] == [0.0, 0.0]


def test_pairwise_tests_holm_and_ranking_sentences():
    rng = np.random.default_rng(11)
    labels = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    systems = {name: [np.where(labels, sep, 0.0) + rng.normal(0, 1, labels.size) for _ in range(3)]
               for name, sep in (("ce", 1.0), ("aam", 3.5), ("coco", 3.45))}
    tests = pairwise_tests(systems, labels, n_bootstrap=200)
    assert len(tests) == 3
    assert all(t["p_holm"] >= t["p_value"] for t in tests)
    by_pair = {(t["a"], t["b"]): t for t in tests}
    assert by_pair[("aam", "ce")]["significant"] and by_pair[("coco", "ce")]["significant"]
    close = by_pair.get(("aam", "coco")) or by_pair[("coco", "aam")]
    assert not close["significant"]
    means = {name: float(np.mean([eer(s, labels)[0] for s in scores])) for name, scores in systems.items()}
    lines = ranking_statements(tests, means, 200)
    assert any(line.startswith("aam < ce (p_Holm") or line.startswith("coco < ce (p_Holm") for line in lines)
    assert any("not significant" in line for line in lines)
    assert set(best_group(tests, means)) == {"aam", "coco"}
