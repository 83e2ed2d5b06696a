"""Calibrating on labelled pairs: thresholds (EER point, target FAR), bootstrap intervals, warnings, JSON files."""

import json

import numpy as np
import pytest

from voxmetric.errors import CalibrationError
from voxmetric.evaluate.calibration import Calibration, fit_calibration
from voxmetric.evaluate.operating_point import (MIN_PAIRS_PER_CLASS, CalibrationResult, calibrate_from_scores,
                                                clopper_pearson)


def gaussian_pairs(rng, n_per_class, mu_target=0.6, mu_nontarget=0.1, sigma=0.15):
    scores = np.r_[rng.normal(mu_target, sigma, n_per_class), rng.normal(mu_nontarget, sigma, n_per_class)]
    return scores, np.r_[np.ones(n_per_class, dtype=bool), np.zeros(n_per_class, dtype=bool)]


def test_eer_point_threshold_by_hand():
    # Sorted: 0.1n 0.2n 0.3n 0.4t 0.5n 0.7t 0.8t 0.9t. Accepting score >= 0.5 rejects one of
    # four targets (0.4) and accepts one of four non-targets (0.5): FAR = FRR = 0.25 there.
    scores = [0.4, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.5]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    result = calibrate_from_scores(scores, labels, n_bootstrap=50)
    assert result.threshold == pytest.approx(0.5)
    assert result.eer == pytest.approx(0.25) and result.far == result.frr == 0.25
    assert result.threshold_ci[0] <= result.threshold <= result.threshold_ci[1]
    assert result.n_target == result.n_nontarget == 4 and len(result.warnings) == 1


def test_known_logistic_case_recovers_the_true_llr(rng):
    # Equal-variance Gaussians: the true LLR is linear, scale = (m1 - m0) / s^2, offset = -(m1^2 - m0^2) / (2 s^2).
    scores, labels = gaussian_pairs(rng, 5000)
    result = calibrate_from_scores(scores, labels, n_bootstrap=10)
    assert result.scale == pytest.approx(0.5 / 0.15**2, rel=0.05)
    assert result.offset == pytest.approx(-(0.36 - 0.01) / (2 * 0.15**2), rel=0.05)
    assert result.threshold == pytest.approx(0.35, abs=0.01)  # EER point halfway between the means


def test_target_far_threshold_gives_that_far_on_the_data(rng):
    scores, labels = gaussian_pairs(rng, 1000)
    result = calibrate_from_scores(scores, labels, target_far=0.01, n_bootstrap=50)
    nontarget = scores[~labels]
    assert result.far == np.mean(nontarget >= result.threshold) == 0.01
    # It is the most accepting such threshold: the next lower non-target score would exceed the FAR.
    below = nontarget[nontarget < result.threshold].max()
    assert np.mean(nontarget >= below) > 0.01
    assert result.frr == np.mean(scores[labels] < result.threshold)
    assert result.threshold > calibrate_from_scores(scores, labels, n_bootstrap=1).threshold  # stricter than EER


def test_threshold_interval_shrinks_with_more_pairs(rng):
    # The width goes as 1 / sqrt(pairs) (~3.2x per 10x pairs); averaged over 3 draws, since
    # one small draw's interval is itself noisy.
    widths = []
    for n in (40, 400, 4000):
        draws = []
        for _ in range(3):
            result = calibrate_from_scores(*gaussian_pairs(rng, n), n_bootstrap=200)
            low, high = result.threshold_ci
            assert low <= result.threshold <= high and result.eer_ci[0] <= result.eer <= result.eer_ci[1]
            draws.append(high - low)
        widths.append(np.mean(draws))
    assert widths[0] > 1.5 * widths[1] > 1.5 ** 2 * widths[2]


def test_warnings_for_few_pairs_and_errors_for_a_missing_kind(rng):
    few = calibrate_from_scores(*gaussian_pairs(rng, MIN_PAIRS_PER_CLASS - 1), n_bootstrap=20)
    assert len(few.warnings) == 1 and "fewer than 50" in few.warnings[0]
    assert calibrate_from_scores(*gaussian_pairs(rng, MIN_PAIRS_PER_CLASS), n_bootstrap=20).warnings == []
    rare = calibrate_from_scores(*gaussian_pairs(rng, 200), target_far=0.01, n_bootstrap=20)
    assert len(rare.warnings) == 1 and "at least 1000 different-speaker pairs" in rare.warnings[0]
    with pytest.raises(CalibrationError, match="no non-target \\(different-speaker\\)"):
        calibrate_from_scores([0.1, 0.5, 0.9], [1, 1, 1])
    with pytest.raises(CalibrationError, match="target_far"):
        calibrate_from_scores([0.1, 0.9], [0, 1], target_far=1.5)


def test_json_round_trip(tmp_path, rng):
    result = calibrate_from_scores(*gaussian_pairs(rng, 30), target_far=0.1, n_bootstrap=20, model="ecapa-small")
    path = tmp_path / "cal.json"
    result.save(path)
    assert CalibrationResult.load(path) == result
    data = json.loads(path.read_text())
    assert data["calibration"] == {"scale": result.scale, "offset": result.offset} and data["model"] == "ecapa-small"
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="cal.json: not a JSON"):
        CalibrationResult.load(path)
    del data["threshold"]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="'threshold' is missing"):
        CalibrationResult.load(path)


SIX_SEPARATED = (np.array([0.62, 0.70, 0.75, 0.18, 0.25, 0.31]), np.array([1, 1, 1, 0, 0, 0]))


def test_six_separable_pairs_give_a_bounded_slope_and_a_wide_interval():
    scores, labels = SIX_SEPARATED
    unregularised = calibrate_from_scores(scores, labels, n_bootstrap=200, regularization=False)
    result = calibrate_from_scores(scores, labels, n_bootstrap=200)
    assert 0 < result.scale < 50 and result.scale < unregularised.scale / 2
    assert result.eer == 0.0 and result.eer_ci[1] > 0.2  # the bootstrap alone says (0, 0)
    assert result.far_ci == result.frr_ci == pytest.approx((0.0, 1 - 0.025 ** (1 / 3)))
    # Shrinkage toward a shipped calibration: between it and the data's steep fit.
    shipped = Calibration(scale=12.0, offset=-5.0)
    toward = calibrate_from_scores(scores, labels, n_bootstrap=20, reference=shipped)
    assert shipped.scale < toward.scale < 50


def test_many_pairs_fit_as_without_regularisation(rng):
    scores, labels = gaussian_pairs(rng, 3000)
    plain = fit_calibration(scores, labels)
    for reference in (None, Calibration(scale=5.0, offset=0.0)):
        fitted = calibrate_from_scores(scores, labels, n_bootstrap=10, reference=reference).calibration
        assert fitted.scale == pytest.approx(plain.scale, rel=0.01)
        assert fitted.offset == pytest.approx(plain.offset, rel=0.01)


def test_clopper_pearson_reference_values():
    assert clopper_pearson(0, 3) == pytest.approx((0.0, 0.7076), abs=1e-4)
    low, high = clopper_pearson(5, 100)  # R: binom.test(5, 100)$conf.int = 0.0164 0.1128
    assert low == pytest.approx(0.01643, abs=1e-4) and high == pytest.approx(0.11284, abs=1e-4)
    assert clopper_pearson(4, 4) == pytest.approx((0.025 ** (1 / 4), 1.0))
