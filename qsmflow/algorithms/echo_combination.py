"""Multi-echo phase combination: a magnitude-weighted complex fit of frequency and offset.

The signal of echo ``n`` is modelled as ``S_n = m_n exp(i (p0 + w (TE_n - TE_1)))``.
Fitting relative to the first echo makes ``p0`` (the phase at TE_1, which contains
the coil/transceiver phase offset) well defined modulo 2*pi without unwrapping, and
removes it from the frequency ``w`` exactly. The fit is a weighted Gauss-Newton
iteration on the wrapped residuals, started from the first echo pair, so that it
copes with uneven echo spacing and with echo-to-echo wraps.

References
----------
Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation of
the magnetic field to source relationship for robust quantitative susceptibility
mapping. Magn Reson Med 2013;69:467-476 (MEDI ``Fit_ppm_complex``).
Robinson SD, Bredies K, Khabipova D, et al. An illustrated comparison of processing
methods for MR phase imaging and QSM. NMR Biomed 2017;30:e3601.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EchoFit:
    """Result of :func:`fit_echo_phase`.

    Attributes
    ----------
    wrapped_phase_rad : ndarray
        ``w * reference_dte_s`` wrapped to (-pi, pi]: offset-free phase for spatial unwrapping.
    frequency_rad_per_s : ndarray
        Fitted angular frequency ``w``, exact modulo ``2 pi / reference_dte_s``.
    phase_at_te1_rad : ndarray
        Fitted ``p0``: the phase at the first echo (offset + w TE_1), wrapped.
    noise_std_hz : ndarray
        Standard deviation of the frequency estimate (Hz), from the fit residual and
        the magnitude weights; zero outside the mask.
    reference_dte_s : float
        Time over which ``wrapped_phase_rad`` accrues.
    """

    wrapped_phase_rad: np.ndarray
    frequency_rad_per_s: np.ndarray
    phase_at_te1_rad: np.ndarray
    noise_std_hz: np.ndarray
    reference_dte_s: float


def wrap_to_pi(phase_rad):
    """Wrap angles to (-pi, pi]."""
    return np.angle(np.exp(1j * np.asarray(phase_rad)))


def fit_echo_phase(
    magnitude: np.ndarray,
    phase_rad: np.ndarray,
    te_s,
    mask: np.ndarray,
    *,
    n_iterations: int = 6,
) -> EchoFit:
    """Fit frequency and phase offset over echoes, weighting each echo by magnitude squared.

    Parameters
    ----------
    magnitude, phase_rad : ndarray, shape (X, Y, Z, N)
        Per-echo magnitude (any unit) and phase in rad.
    te_s : sequence of float, length N
        Echo times in seconds, strictly increasing (uneven spacing is fine).
    mask : ndarray of bool, shape (X, Y, Z)
    n_iterations : int
        Gauss-Newton iterations.

    Returns
    -------
    EchoFit
        With one echo there is no offset information: ``p0`` is taken as zero and the
        phase itself is returned (the caller should warn).
    """
    magnitude = np.asarray(magnitude, dtype=np.float64)
    phase_rad = np.asarray(phase_rad, dtype=np.float64)
    te_s = np.asarray(te_s, dtype=np.float64)
    if magnitude.shape != phase_rad.shape or magnitude.ndim != 4:
        raise ValueError("magnitude and phase must both have shape (X, Y, Z, n_echoes)")
    if te_s.size != phase_rad.shape[-1]:
        raise ValueError(f"{te_s.size} echo times for {phase_rad.shape[-1]} echoes")
    if np.any(np.diff(te_s) <= 0) or te_s[0] <= 0:
        raise ValueError(f"echo times must be positive and increasing, got {te_s.tolist()}")

    mask = np.asarray(mask, dtype=bool)
    m = magnitude[mask]  # (V, N)
    p = phase_rad[mask]
    n_echoes = te_s.size
    shape = mask.shape

    def scatter(values, fill=0.0):
        out = np.full(shape, fill, dtype=np.float64)
        out[mask] = values
        return out

    if n_echoes == 1:
        omega = p[:, 0] / te_s[0]
        std_hz = 1.0 / (2 * np.pi * te_s[0] * np.maximum(m[:, 0], 1e-12))
        return EchoFit(
            wrapped_phase_rad=scatter(wrap_to_pi(p[:, 0])),
            frequency_rad_per_s=scatter(omega),
            phase_at_te1_rad=np.zeros(shape),
            noise_std_hz=scatter(std_hz / np.median(std_hz) if std_hz.size else std_hz),
            reference_dte_s=float(te_s[0]),
        )

    t = te_s - te_s[0]  # time since the first echo
    signal = m * np.exp(1j * p)
    weight = m**2
    # Start: frequency from the first pair, offset from the first echo.
    omega = np.angle(signal[:, 1] * np.conj(signal[:, 0])) / t[1]
    p0 = np.angle(signal[:, 0])
    for _ in range(n_iterations):
        residual = wrap_to_pi(p - p0[:, None] - omega[:, None] * t[None, :])
        # Weighted least squares for the update of (p0, omega): 2x2 normal equations.
        s0 = weight.sum(1)
        s1 = (weight * t).sum(1)
        s2 = (weight * t**2).sum(1)
        r0 = (weight * residual).sum(1)
        r1 = (weight * residual * t).sum(1)
        det = s0 * s2 - s1**2
        det = np.where(np.abs(det) > 1e-30, det, np.inf)
        p0 = p0 + (s2 * r0 - s1 * r1) / det
        omega = omega + (s0 * r1 - s1 * r0) / det

    residual = wrap_to_pi(p - p0[:, None] - omega[:, None] * t[None, :])
    s0 = weight.sum(1)
    t_mean = (weight * t).sum(1) / np.maximum(s0, 1e-30)
    sxx = (weight * (t[None, :] - t_mean[:, None]) ** 2).sum(1)
    # Cramer-Rao bound of the slope: var(w) = sigma^2 / sum(m_n^2 (t_n - tbar)^2), where the
    # phase noise sigma/m_n comes from complex noise sigma. sigma^2 is estimated once for
    # the whole mask (median of the weighted residuals), which is far less noisy than a
    # per-voxel estimate from a few echoes; the map's contrast comes from the magnitudes.
    dof = n_echoes - 2
    if dof > 0:
        sigma_sq = float(np.median((weight * residual**2).sum(1) / dof)) if residual.size else 1.0
    else:
        sigma_sq = 1.0  # two echoes: relative noise only
    var_omega = sigma_sq / np.maximum(sxx, 1e-30)
    std_hz = np.sqrt(var_omega) / (2 * np.pi)
    reference_dte = float(t[1])
    return EchoFit(
        wrapped_phase_rad=scatter(wrap_to_pi(omega * reference_dte)),
        frequency_rad_per_s=scatter(omega),
        phase_at_te1_rad=scatter(wrap_to_pi(p0)),
        noise_std_hz=scatter(std_hz),
        reference_dte_s=reference_dte,
    )


def data_weight_from_noise(noise_std_hz: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised data-fidelity weight W in [0, 1] from the frequency noise map.

    W = median(sigma) / sigma, clipped to [0, 1], zero outside the mask: voxels with
    typical noise get weight ~1, noisy voxels (dark veins, boundaries) less.
    """
    weight = np.zeros(mask.shape, dtype=np.float64)
    sigma = noise_std_hz[mask]
    positive = sigma[sigma > 0]
    if positive.size == 0:
        weight[mask] = 1.0
        return weight
    ref = np.median(positive)
    with np.errstate(divide="ignore"):
        weight[mask] = np.clip(ref / np.maximum(sigma, 1e-12 * ref), 0.0, 1.0)
    return weight
