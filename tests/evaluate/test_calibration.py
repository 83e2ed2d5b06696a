"""Score calibration: logistic fit against closed-form LLRs, thresholds, Cllr, input checks."""

import math

import numpy as np
import pytest

from voxmetric.evaluate.calibration import Calibration, cllr, fit_calibration
from voxmetric.evaluate.operating_point import threshold_at
from voxmetric.evaluate.metrics import ScoresError, eer


def _gaussian_scores(rng, n_target, n_nontarget, mu_target=0.6, mu_nontarget=0.1, sigma=0.15):
    """Scores from two equal-variance Gaussians, whose true LLR is linear in the score:

    log N(s; m1, sigma) / N(s; m0, sigma) = (m1 - m0) / sigma^2 * s - (m1^2 - m0^2) / (2 sigma^2).
    """
    scores = np.r_[rng.normal(mu_target, sigma, n_target), rng.normal(mu_nontarget, sigma, n_nontarget)]
    labels = np.r_[np.ones(n_target, dtype=bool), np.zeros(n_nontarget, dtype=bool)]
    scale = (mu_target - mu_nontarget) / sigma**2
    offset = -(mu_target**2 - mu_nontarget**2) / (2 * sigma**2)
    return scores, labels, scale, offset


@pytest.mark.parametrize("prior", [0.5, 0.05])
@pytest.mark.parametrize("n_target, n_nontarget", [(20_000, 20_000), (5_000, 40_000)])
def test_fit_recovers_the_true_llr_of_two_gaussians(rng, prior, n_target, n_nontarget):
    # The linear model is exact here, so the fit recovers the same map whatever the prior
    # weighting and the class proportions (a proper scoring rule).
    scores, labels, scale, offset = _gaussian_scores(rng, n_target, n_nontarget)
    fitted = fit_calibration(scores, labels, prior=prior)
    assert fitted.scale == pytest.approx(scale, rel=0.05)
    assert fitted.offset == pytest.approx(offset, rel=0.05)
    grid = np.linspace(0.0, 0.7, 8)
    assert np.abs(fitted.llr(grid) - (scale * grid + offset)).max() < 0.3


def test_calibrated_llrs_have_a_lower_cllr_than_raw_scores(rng):
    scores, labels, scale, offset = _gaussian_scores(rng, 3000, 3000)
    fitted = fit_calibration(scores, labels)
    assert cllr(fitted.llr(scores), labels) < cllr(scores, labels) < 1.0
    assert cllr(fitted.llr(scores), labels) == pytest.approx(cllr(scale * scores + offset, labels), abs=0.01)


def test_separable_scores_give_a_finite_steep_calibration():
    fitted = fit_calibration([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert math.isfinite(fitted.scale) and fitted.scale > 10
    assert fitted.llr(0.85) > 0 > fitted.llr(0.15)


def test_llr_and_bayes_threshold():
    calibration = Calibration(scale=10.0, offset=-4.0)
    assert calibration.llr(0.5) == pytest.approx(1.0)
    assert isinstance(calibration.llr(0.5), float)
    np.testing.assert_allclose(calibration.llr(np.array([0.0, 0.4])), [-4.0, 0.0])
    assert calibration.bayes_threshold(0.5) == pytest.approx(0.4)
    # accept when llr > -logit(P): at P = 0.01 the threshold moves up by log(99) / scale
    assert calibration.llr(calibration.bayes_threshold(0.01)) == pytest.approx(math.log(99))
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_eer_threshold_is_the_eer_point():
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.4])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    assert threshold_at(scores, labels) == eer(scores, labels)[1]
    assert 0.3 <= threshold_at(scores, labels) <= 0.6


def test_cllr_reference_points():
    labels = np.array([1, 1, 0, 0])
    assert cllr(np.zeros(4), labels) == pytest.approx(1.0)
    assert cllr(np.array([30.0, 30.0, -30.0, -30.0]), labels) < 1e-10
    assert cllr(np.array([-5.0, -5.0, 5.0, 5.0]), labels) > 1.0


@pytest.mark.parametrize("scores, labels, message", [
    ([0.1, 0.2], [1, 1], "no non-target"),
    ([0.3, 0.3, 0.3], [1, 0, 1], "all 3 scores are equal"),
    ([0.1, float("nan")], [1, 0], "must be finite"),
    ([0.1, 0.2], [1, 0, 1], "equal length"),
])
def test_fit_rejects_bad_input(scores, labels, message):
    with pytest.raises(ScoresError, match=message):
        fit_calibration(scores, labels)


def test_bad_prior_and_bad_calibration_values():
    with pytest.raises(ValueError, match="prior"):
        fit_calibration([0.1, 0.9], [0, 1], prior=1.0)
    with pytest.raises(ValueError, match="scale must be positive"):
        Calibration(scale=-1.0, offset=0.0)
    with pytest.raises(ValueError, match="finite"):
        Calibration(scale=float("inf"), offset=0.0)
    with pytest.raises(ValueError, match="'scale'"):
        Calibration.from_dict({"scale": 1.0})


def test_scores_where_same_speaker_pairs_score_lower_cannot_be_calibrated():
    from voxmetric.errors import CalibrationError

    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.1, 0.2, 0.15, 0.3, 0.8, 0.7, 0.9, 0.6])  # inverted: a broken or wrong model
    with pytest.raises(CalibrationError, match="same-speaker pairs do not score higher"):
        fit_calibration(scores, labels, regularization=None)
