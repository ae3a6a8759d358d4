"""Echo combination recovers a known frequency and offset."""

import numpy as np
import pytest

from qsmflow.algorithms.echo_combination import data_weight_from_noise, fit_echo_phase, wrap_to_pi


def _signal(freq_hz, offset_rad, te_s, magnitude, rng, noise_sd=0.0, r2star_hz=0.0):
    shape = freq_hz.shape
    mags, phases = [], []
    for te in te_s:
        phase = offset_rad + 2 * np.pi * freq_hz * te
        s = magnitude * np.exp(-r2star_hz * te) * np.exp(1j * phase)
        s = s + noise_sd * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
        mags.append(np.abs(s))
        phases.append(np.angle(s))
    return np.stack(mags, -1), np.stack(phases, -1)


def _check_exact(fit, freq, offset, te_s, atol=1e-6):
    np.testing.assert_allclose(fit.frequency_rad_per_s / (2 * np.pi), freq, atol=atol)
    np.testing.assert_allclose(
        wrap_to_pi(fit.wrapped_phase_rad - 2 * np.pi * freq * fit.reference_dte_s), 0, atol=atol)
    np.testing.assert_allclose(wrap_to_pi(fit.phase_at_te1_rad - offset
                                          - 2 * np.pi * freq * te_s[0]), 0, atol=atol)


@pytest.mark.parametrize("te_s", [(0.004, 0.008, 0.012), (0.003, 0.0065, 0.0125, 0.021, 0.024)])
def test_fit_recovers_frequency_and_removes_offset(te_s, rng):
    shape = (20, 20, 10)
    freq = rng.uniform(-60, 60, shape)  # Hz, wraps at later echoes
    offset = rng.uniform(-np.pi, np.pi, shape)  # large offset
    mag, phase = _signal(freq, offset, te_s, np.ones(shape), rng)
    fit = fit_echo_phase(mag, phase, te_s, np.ones(shape, bool))
    _check_exact(fit, freq, offset, te_s)


@pytest.mark.parametrize("n_echoes", range(2, 11))
def test_two_to_ten_uneven_echoes_with_large_offset_and_temporal_wraps(n_echoes, rng):
    """Uneven spacing (shortest gap not first), offsets of several turns, many wraps in time."""
    shape = (12, 11, 7)
    gaps_s = rng.uniform(0.0025, 0.006, n_echoes - 1)
    gaps_s[0] = 0.009  # a long first gap: starting from the first pair would alias
    te_s = 0.0035 + np.concatenate([[0.0], np.cumsum(gaps_s)])
    bandwidth_hz = 1.0 / (2.0 * gaps_s.min())
    freq = rng.uniform(-0.9, 0.9, shape) * bandwidth_hz
    offset = rng.uniform(-3 * np.pi, 3 * np.pi, shape)  # several turns: large offset
    if n_echoes >= 4:
        assert np.abs(2 * np.pi * freq[..., None] * te_s).max() > 4 * np.pi  # wraps in time
    mag, phase = _signal(freq, offset, te_s, np.ones(shape), rng, r2star_hz=30.0)
    fit = fit_echo_phase(mag, phase, te_s, np.ones(shape, bool))
    assert fit.reference_dte_s == pytest.approx(gaps_s.min())
    _check_exact(fit, freq, offset, te_s)
    assert np.all(np.isfinite(fit.noise_std_hz))


def test_even_echoes_beyond_the_bandwidth_give_a_consistent_alias(rng):
    """Above 1/(2 dTE) the frequency aliases, but the wrapped phase over dTE stays right."""
    shape = (8, 8, 8)
    te_s = (0.004, 0.008, 0.012, 0.016)
    freq = rng.uniform(130, 240, shape)  # the alias-free band is +-125 Hz
    offset = rng.uniform(-np.pi, np.pi, shape)
    mag, phase = _signal(freq, offset, te_s, np.ones(shape), rng)
    fit = fit_echo_phase(mag, phase, te_s, np.ones(shape, bool))
    np.testing.assert_allclose(
        wrap_to_pi(fit.wrapped_phase_rad - 2 * np.pi * freq * fit.reference_dte_s), 0, atol=1e-6)


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
    # The global noise level is right too, not only the contrast.
    assert np.median(noise[20:]) == pytest.approx(0.285, rel=0.1)
    assert fit.noise_is_absolute  # four echoes: the map is in Hz
    two = fit_echo_phase(mag[..., :2], phase[..., :2], te_s[:2], np.ones(shape, bool))
    assert not two.noise_is_absolute  # two echoes: no residual, a relative map only
    weight = data_weight_from_noise(noise, np.ones(shape, bool))
    assert 0 <= weight.min() and weight.max() <= 1
    assert np.median(weight[20:]) == pytest.approx(1.0)
    assert np.median(weight[:10]) == pytest.approx(0.25, rel=0.05)


def test_noisy_fast_decaying_voxels_do_not_break_the_fit(rng):
    """Late echoes of a fast-decaying voxel are pure noise: the m^2 weights silence them."""
    shape = (30, 30, 10)
    te_s = (0.004, 0.008, 0.012, 0.016, 0.020, 0.024)
    freq = rng.uniform(-40, 40, shape)
    r2star = np.where(np.arange(30)[:, None, None] < 15, 250.0, 20.0) * np.ones(shape)
    mag, phase = _signal(freq, np.full(shape, 1.0), te_s, np.ones(shape), rng, noise_sd=0.01,
                         r2star_hz=r2star)
    mag[0, 0, 0] = 0.0  # a voxel without any signal stays finite
    fit = fit_echo_phase(mag, phase, te_s, np.ones(shape, bool))
    error_hz = fit.frequency_rad_per_s / (2 * np.pi) - freq
    assert np.all(np.isfinite(fit.frequency_rad_per_s))
    assert np.abs(error_hz[15:]).max() < 2.0
    # Cramer-Rao sd of the fast-decaying half: 0.01 / (2 pi sqrt(sum m^2 (t - tbar)^2)) = 2.4 Hz;
    # the median absolute error of a Gaussian is 0.67 sd. Measured: 2.05 Hz.
    assert np.median(np.abs(error_hz[:15])) < 2.4
    assert np.median(fit.noise_std_hz[:15]) > 3 * np.median(fit.noise_std_hz[15:])


def test_fit_outside_mask_is_zero_and_float32_input_works(rng):
    shape = (10, 9, 8)
    te_s = (0.004, 0.009, 0.014)
    freq = rng.uniform(-50, 50, shape)
    mag, phase = _signal(freq, np.zeros(shape), te_s, np.ones(shape), rng)
    mask = np.zeros(shape, bool)
    mask[2:8, 2:7, 2:6] = True
    fit = fit_echo_phase(mag.astype(np.float32), phase.astype(np.float32), te_s, mask)
    np.testing.assert_allclose(fit.frequency_rad_per_s[mask] / (2 * np.pi), freq[mask],
                               atol=1e-3)
    assert not fit.frequency_rad_per_s[~mask].any() and not fit.noise_std_hz[~mask].any()


def test_single_echo_returns_phase():
    shape = (4, 4, 4)
    phase = np.full(shape + (1,), 0.7)
    fit = fit_echo_phase(np.ones(shape + (1,)), phase, [0.02], np.ones(shape, bool))
    np.testing.assert_allclose(fit.frequency_rad_per_s, 0.7 / 0.02)
    np.testing.assert_allclose(fit.wrapped_phase_rad, 0.7)
    assert fit.reference_dte_s == 0.02


def test_rejects_unsorted_echo_times():
    with pytest.raises(ValueError, match="increasing"):
        fit_echo_phase(np.ones((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), [0.01, 0.005],
                       np.ones((2, 2, 2), bool))


def test_wrap_to_pi_range():
    x = np.array([-3 * np.pi, -np.pi, 0.0, np.pi, 3 * np.pi + 0.1, 1e3])
    w = wrap_to_pi(x)
    assert np.all(w > -np.pi - 1e-12) and np.all(w <= np.pi + 1e-12)
    np.testing.assert_allclose(np.exp(1j * w), np.exp(1j * x), atol=1e-9)
