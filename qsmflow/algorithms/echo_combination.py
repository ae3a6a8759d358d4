"""Multi-echo phase combination: a magnitude-weighted fit of frequency and offset.

The signal of echo ``n`` is modelled as ``S_n = m_n exp(i (p0 + w (TE_n - TE_1)))``.
Fitting relative to the first echo makes ``p0`` (the phase at TE_1, which contains
the coil/transceiver phase offset) well defined modulo 2*pi without unwrapping, and
removes it from the frequency ``w`` exactly.

The fit is robust to wraps along the echo train. It starts from the pair of echoes
with the shortest spacing (the widest alias-free bandwidth, ``1 / (2 dTE_min)``),
then unwraps the other echoes one at a time in time, each to the phase that the
weighted line through the echoes already unwrapped predicts (temporal unwrapping),
and finally solves the weighted least-squares line through all unwrapped phases.
With weights ``m_n^2`` (phase noise ``sigma / m_n``), this is the maximum-likelihood
estimate of MEDI's nonlinear complex fit wherever the residuals stay below pi, and it
needs no iterations. It works for any number of echoes from 1 and for uneven spacing.

References
----------
Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation of
the magnetic field to source relationship for robust quantitative susceptibility
mapping. Magn Reson Med 2013;69:467-476 (MEDI ``Fit_ppm_complex``).
Robinson SD, Bredies K, Khabipova D, et al. An illustrated comparison of processing
methods for MR phase imaging and QSM. NMR Biomed 2017;30:e3601.
Feng W, Neelavalli J, Haacke EM. Catalytic multiecho phase unwrapping scheme (CAMPUS)
in multiecho gradient echo imaging. Magn Reson Med 2013;70:117-126 (temporal unwrapping
from the shortest echo spacing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

TWO_PI = 2.0 * np.pi
FIT_CHUNK_VOXELS = 1 << 19  # voxels fitted at once: bounds the temporaries to ~100 MB
RELATIVE_WEIGHT_FLOOR = 1e-12  # keeps voxels without signal solvable (they get equal weights)


@dataclass(frozen=True)
class EchoFit:
    """Result of :func:`fit_echo_phase`.

    Attributes
    ----------
    wrapped_phase_rad : ndarray
        ``w * reference_dte_s`` wrapped to (-pi, pi]: offset-free phase for spatial unwrapping.
    frequency_rad_per_s : ndarray
        Fitted angular frequency ``w``. It is exact modulo ``2 pi / reference_dte_s`` (for
        evenly spaced echoes); spatial unwrapping of ``wrapped_phase_rad`` resolves that alias.
    phase_at_te1_rad : ndarray
        Fitted ``p0``: the phase at the first echo (offset + w TE_1), wrapped.
    noise_std_hz : ndarray
        Standard deviation of the frequency estimate (Hz), from the fit residual and
        the magnitude weights; zero outside the mask. With two echoes the residual is
        zero and the map is relative (noise variance taken as 1).
    reference_dte_s : float
        Time over which ``wrapped_phase_rad`` accrues: the shortest echo spacing (the
        first echo time for a single echo).
    noise_is_absolute : bool
        True when ``noise_std_hz`` is in Hz (three or more echoes with a residual); False
        when it is only relative (one or two echoes, or noise-free data).
    """

    wrapped_phase_rad: np.ndarray
    frequency_rad_per_s: np.ndarray
    phase_at_te1_rad: np.ndarray
    noise_std_hz: np.ndarray
    reference_dte_s: float
    noise_is_absolute: bool = False


def wrap_to_pi(phase_rad):
    """Wrap angles to (-pi, pi] with arithmetic only (no complex exponentials)."""
    phase_rad = np.asarray(phase_rad)
    return np.pi - np.remainder(np.pi - phase_rad, TWO_PI)


def _weighted_line(s0, s1, s2, r0, r1):
    """Intercept and slope of the weighted least-squares line from its running sums."""
    det = s0 * s2 - s1**2
    det = np.where(det > 0, det, np.inf)  # one time point only: slope 0, intercept = mean
    slope = (s0 * r1 - s1 * r0) / det
    intercept = (r0 - slope * s1) / s0
    return intercept, slope


def _fit_chunk(m, p, t):
    """Temporal unwrapping and weighted line fit for a (V, N) block of voxels.

    ``t`` is measured from the first echo. Returns ``(p0, omega, weighted residual sum of
    squares, sum of m^2 (t - tbar)^2)``.
    """
    weight = m.astype(np.float64) ** 2
    floor = RELATIVE_WEIGHT_FLOOR * max(float(weight.mean()), np.finfo(float).tiny)
    weight += floor
    p = p.astype(np.float64)
    dt = np.diff(t)
    a = int(np.argmin(dt))  # the pair with the widest alias-free bandwidth
    ta = t[a]
    tc = t - ta  # centred on the reference echo for conditioning
    unwrapped = np.empty_like(p)
    unwrapped[:, a] = p[:, a]
    unwrapped[:, a + 1] = p[:, a] + wrap_to_pi(p[:, a + 1] - p[:, a])
    sums = [np.zeros(len(p)) for _ in range(5)]

    def add(n):
        w = weight[:, n]
        sums[0] += w
        sums[1] += w * tc[n]
        sums[2] += w * tc[n] ** 2
        sums[3] += w * unwrapped[:, n]
        sums[4] += w * unwrapped[:, n] * tc[n]

    add(a)
    add(a + 1)
    # The rest, nearest to the reference pair first: each prediction is made over the
    # shortest extrapolation, where the line's error is smallest.
    centre = 0.5 * (t[a] + t[a + 1])
    for n in sorted(set(range(len(t))) - {a, a + 1}, key=lambda k: abs(t[k] - centre)):
        intercept, slope = _weighted_line(*sums)
        predicted = intercept + slope * tc[n]
        unwrapped[:, n] = predicted + wrap_to_pi(p[:, n] - predicted)
        add(n)
    intercept, slope = _weighted_line(*sums)
    residual = unwrapped - intercept[:, None] - slope[:, None] * tc[None, :]
    rss = (weight * residual**2).sum(1)
    t_mean = sums[1] / sums[0]
    sxx = (weight * (tc[None, :] - t_mean[:, None]) ** 2).sum(1)
    p0 = intercept + slope * (t[0] - ta)
    return p0, slope, rss, sxx


def fit_echo_phase(magnitude: np.ndarray, phase_rad: np.ndarray, te_s, mask: np.ndarray) -> EchoFit:
    """Fit frequency and phase offset over echoes, weighting each echo by magnitude squared.

    Parameters
    ----------
    magnitude, phase_rad : ndarray, shape (X, Y, Z, N)
        Per-echo magnitude (any unit) and phase in rad. float32 input is fine: the fit
        runs in float64 on blocks of voxels.
    te_s : sequence of float, length N
        Echo times in seconds, strictly increasing; uneven spacing is fine.
    mask : ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    EchoFit
        With one echo there is no offset information: ``p0`` is taken as zero and the
        phase itself is returned (the caller should warn).

    Notes
    -----
    The frequency is alias-free for ``|f| < 1 / (2 dTE_min)``. Beyond that, with evenly
    spaced echoes, the fit returns an alias whose wrapped phase over ``reference_dte_s``
    is still correct, so spatial unwrapping recovers the true field.

    References
    ----------
    Liu T, et al. Magn Reson Med 2013;69:467-476.
    Feng W, Neelavalli J, Haacke EM. Magn Reson Med 2013;70:117-126.
    """
    magnitude = np.asarray(magnitude)
    phase_rad = np.asarray(phase_rad)
    te_s = np.asarray(te_s, dtype=np.float64).ravel()
    if magnitude.shape != phase_rad.shape or magnitude.ndim != 4:
        raise ValueError("magnitude and phase must both have shape (X, Y, Z, n_echoes)")
    if te_s.size != phase_rad.shape[-1]:
        raise ValueError(f"{te_s.size} echo times for {phase_rad.shape[-1]} echoes")
    if np.any(np.diff(te_s) <= 0) or te_s[0] <= 0:
        raise ValueError(f"echo times must be positive and increasing, got {te_s.tolist()}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != magnitude.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} does not match the images {magnitude.shape[:3]}")

    shape = mask.shape
    index = np.flatnonzero(mask)
    n_echoes = te_s.size
    m_flat = magnitude.reshape(-1, n_echoes)
    p_flat = phase_rad.reshape(-1, n_echoes)

    def scatter(values):
        out = np.zeros(shape, dtype=np.float64)
        out.flat[index] = values
        return out

    if n_echoes == 1:
        p = p_flat[index, 0].astype(np.float64)
        m = m_flat[index, 0].astype(np.float64)
        std_hz = 1.0 / (TWO_PI * te_s[0] * np.maximum(m, 1e-12))
        return EchoFit(
            wrapped_phase_rad=scatter(wrap_to_pi(p)),
            frequency_rad_per_s=scatter(p / te_s[0]),
            phase_at_te1_rad=np.zeros(shape),
            noise_std_hz=scatter(std_hz / np.median(std_hz) if std_hz.size else std_hz),
            reference_dte_s=float(te_s[0]),
        )

    t = te_s - te_s[0]
    p0 = np.empty(index.size)
    omega = np.empty(index.size)
    rss = np.empty(index.size)
    sxx = np.empty(index.size)
    for start in range(0, index.size, FIT_CHUNK_VOXELS):
        block = index[start:start + FIT_CHUNK_VOXELS]
        part = slice(start, start + block.size)
        p0[part], omega[part], rss[part], sxx[part] = _fit_chunk(m_flat[block], p_flat[block], t)

    # Cramer-Rao bound of the slope: var(w) = sigma^2 / sum(m_n^2 (t_n - tbar)^2), where the
    # phase noise sigma/m_n comes from complex noise sigma. sigma^2 is estimated once for
    # the whole mask (median of the weighted residuals), which is far less noisy than a
    # per-voxel estimate from a few echoes; the map's contrast comes from the magnitudes.
    # rss / sigma^2 follows chi-square with n_echoes - 2 degrees of freedom, so its median
    # is divided by that distribution's median (not by the dof, which biases it low).
    dof = n_echoes - 2
    absolute = False
    if dof > 0 and rss.size:
        sigma_sq = float(np.median(rss)) / float(stats.chi2.median(dof))
        absolute = sigma_sq > 0
    else:
        sigma_sq = 1.0
    if not sigma_sq > 0:
        sigma_sq = 1.0  # noise-free data: keep a relative map
    std_hz = np.sqrt(sigma_sq / np.maximum(sxx, 1e-30)) / TWO_PI
    reference_dte = float(np.diff(te_s).min())
    return EchoFit(
        wrapped_phase_rad=scatter(wrap_to_pi(omega * reference_dte)),
        frequency_rad_per_s=scatter(omega),
        phase_at_te1_rad=scatter(wrap_to_pi(p0)),
        noise_std_hz=scatter(std_hz),
        reference_dte_s=reference_dte,
        noise_is_absolute=absolute,
    )


def data_weight_from_noise(noise_std_hz: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised data-fidelity weight W in [0, 1] from the frequency noise map.

    W = median(sigma) / sigma, clipped to [0, 1], zero outside the mask: voxels with
    typical noise get weight ~1, noisy voxels (dark veins, boundaries) less.

    References
    ----------
    Liu T, Liu J, de Rochefort L, et al. Morphology enabled dipole inversion (MEDI) from
    a single-angle acquisition. Magn Reson Med 2011;66:777-783 (noise-weighted data term).
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
