import numpy as np
import pytest

from qsmflow.algorithms.metrics import hfen_percent, nrmse_percent, psnr_db, roi_regression, xsim


def test_metrics_of_identical_and_scaled_maps(rng):
    truth = rng.normal(scale=0.05, size=(20, 20, 20))
    mask = np.ones(truth.shape, bool)
    assert nrmse_percent(truth, truth, mask) == 0
    assert hfen_percent(truth, truth, mask) == 0
    assert xsim(truth, truth, mask) == pytest.approx(1.0)
    assert nrmse_percent(0.5 * truth, truth, mask) == pytest.approx(50.0)
    assert hfen_percent(0.5 * truth, truth, mask) == pytest.approx(50.0)
    assert xsim(0.5 * truth, truth, mask) < 0.99
    noisy = truth + rng.normal(scale=0.01, size=truth.shape)
    peak = truth.max() - truth.min()
    assert psnr_db(noisy, truth, mask) == pytest.approx(
        10 * np.log10(peak**2 / np.mean((noisy - truth) ** 2)))


def test_roi_regression_recovers_slope():
    labels = np.repeat(np.arange(1, 6), 10).reshape(5, 10, 1)
    truth = labels * 0.03
    slope, r2 = roi_regression(0.8 * truth + 0.01, truth, labels, np.ones(labels.shape, bool),
                               range(1, 6))
    assert slope == pytest.approx(0.8) and r2 == pytest.approx(1.0)


def test_nrmse_counts_only_the_mask(rng):
    truth = np.ones((6, 5, 4))
    mask = np.zeros(truth.shape, bool)
    mask[:3] = True
    estimate = np.where(mask, 1.2, rng.normal(size=truth.shape))  # garbage outside
    assert nrmse_percent(estimate, truth, mask) == pytest.approx(20.0, rel=1e-12)
