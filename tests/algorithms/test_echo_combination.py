"""Echo combination recovers a known frequency and offset."""

import numpy as np
import pytest

from qsmflow.algorithms.echo_combination import data_weight_from_noise, fit_echo_phase, wrap_to_pi


def _signal(freq_hz, offset_rad, te_s, magnitude, rng, noise_sd=0.0):
    shape = freq_hz.shape
    mags, phases = [], []
    for te in te_s:
        s = magnitude * np.exp(1j * (offset_rad + 2 * np.pi * freq_hz * te))
        s = s + noise_sd * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
        mags.append(np.abs(s))
        phases.append(np.angle(s))
    return np.stack(mags, -1), np.stack(phases, -1)


@pytest.mark.parametrize("te_s", [(0.004, 0.008, 0.012), (0.003, 0.0065, 0.0125, 0.021, 0.024)])
def test_fit_recovers_frequency_and_removes_offset(te_s, rng):
    shape = (20, 20, 10)
    freq = rng.uniform(-60, 60, shape)  # Hz, wraps at later echoes
    offset = rng.uniform(-np.pi, np.pi, shape)  # large offset
    mag, phase = _signal(freq, offset, te_s, np.ones(shape), rng)
    fit = fit_echo_phase(mag, phase, te_s, np.ones(shape, bool))
    np.testing.assert_allclose(fit.frequency_rad_per_s / (2 * np.pi), freq, atol=1e-6)
    np.testing.assert_allclose(
        wrap_to_pi(fit.wrapped_phase_rad - 2 * np.pi * freq * fit.reference_dte_s), 0, atol=1e-6)
    np.testing.assert_allclose(wrap_to_pi(fit.phase_at_te1_rad - offset
                                          - 2 * np.pi * freq * te_s[0]), 0, atol=1e-6)


def test_fit_with_noise_is_unbiased_and_reports_noise(rng):
    shape = (40, 40, 20)
    te_s = (0.005, 0.010, 0.015, 0.020)
    freq = np.full(shape, 12.0)
    magnitude = np.ones(shape)
    magnitude[:10] = 0.25  # low-signal quarter: noisier frequency
    mag, phase = _signal(freq, np.full(shape, 2.5), te_s, magnitude, rng, noise_sd=0.02)
    fit = fit_echo_phase(mag, phase, te_s, np.ones(shape, bool))
    f = fit.frequency_rad_per_s / (2 * np.pi)
    assert abs(f[20:].mean() - 12.0) < 0.05
    # Theory: sd(f) = sigma / (2 pi m sqrt(sum (t - tbar)^2)) = 0.02/(2 pi * 0.01118) = 0.285 Hz
    assert f[20:].std() == pytest.approx(0.285, rel=0.1)
    assert f[:10].std() == pytest.approx(4 * 0.285, rel=0.15)
    noise = fit.noise_std_hz
    assert np.median(noise[:10]) == pytest.approx(4 * np.median(noise[20:]), rel=0.05)
    weight = data_weight_from_noise(noise, np.ones(shape, bool))
    assert 0 <= weight.min() and weight.max() <= 1
    assert np.median(weight[20:]) == pytest.approx(1.0)
    assert np.median(weight[:10]) == pytest.approx(0.25, rel=0.05)


def test_single_echo_returns_phase():
    shape = (4, 4, 4)
    phase = np.full(shape + (1,), 0.7)
    fit = fit_echo_phase(np.ones(shape + (1,)), phase, [0.02], np.ones(shape, bool))
    np.testing.assert_allclose(fit.frequency_rad_per_s, 0.7 / 0.02)
    assert fit.reference_dte_s == 0.02


def test_rejects_unsorted_echo_times():
    with pytest.raises(ValueError, match="increasing"):
        fit_echo_phase(np.ones((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), [0.01, 0.005],
                       np.ones((2, 2, 2), bool))
