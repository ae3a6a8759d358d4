"""Laplacian phase unwrapping.

References
----------
Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications.
Opt Lett 2003;28:1194-1196.
Li W, Wu B, Liu C. Quantitative susceptibility mapping of human brain reflects spatial
variation in tissue composition. NeuroImage 2011;55:1645-1656.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

from .fourier import FFT_WORKERS, fast_padded_shape


def _laplacian_symbol(shape, voxel_size_mm) -> np.ndarray:
    """Fourier symbol of the 7-point discrete Laplacian (1/mm^2), full complex FFT layout."""
    symbol = 0.0
    for axis, (n, h) in enumerate(zip(shape, voxel_size_mm)):
        f = sp_fft.fftfreq(n)  # cycles per voxel
        view = [1] * len(shape)
        view[axis] = n
        symbol = symbol + (2.0 * np.cos(2 * np.pi * f) - 2.0).reshape(view) / h**2
    return np.asarray(symbol)


def laplacian_unwrap(phase_rad: np.ndarray, voxel_size_mm, *, pad_vox: int = 8) -> np.ndarray:
    """Unwrap phase with the FFT-based Laplacian method.

    Solves ``lap(u) = cos(p) lap(sin p) - sin(p) lap(cos p)`` for ``u``. The true
    Laplacian of the unwrapped phase is recovered wherever neighbouring phase
    differences are below pi, so ``u`` equals the unwrapped phase up to a smooth
    harmonic term. The volume is mirror-padded, which keeps the FOV border free of
    the artificial edges that zero padding would add. Anisotropic voxels enter the
    Laplacian with their physical spacing.

    Parameters
    ----------
    phase_rad : ndarray, 3-D
        Wrapped phase in rad.
    voxel_size_mm : sequence of float
    pad_vox : int
        Mirror padding on each side, in voxels.

    Returns
    -------
    ndarray
        Smooth unwrapped phase estimate in rad (arbitrary additive constant).
    """
    phase_rad = np.asarray(phase_rad, dtype=np.float64)
    padded_shape = fast_padded_shape(phase_rad.shape, pad_vox)
    extra = [(p - n) for n, p in zip(phase_rad.shape, padded_shape)]
    pad_width = [(e // 2, e - e // 2) for e in extra]
    padded = np.pad(phase_rad, pad_width, mode="reflect")
    inner = tuple(slice(b, b + n) for (b, _), n in zip(pad_width, phase_rad.shape))

    lap = _laplacian_symbol(padded_shape, voxel_size_mm)
    z = np.exp(1j * padded)
    lap_z = sp_fft.ifftn(sp_fft.fftn(z, workers=FFT_WORKERS) * lap, workers=FFT_WORKERS)
    lap_phase = np.imag(np.conj(z) * lap_z)  # = cos lap(sin) - sin lap(cos)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(lap != 0, 1.0 / lap, 0.0)
    unwrapped = sp_fft.ifftn(sp_fft.fftn(lap_phase, workers=FFT_WORKERS) * inverse,
                             workers=FFT_WORKERS).real
    return unwrapped[inner]


def snap_to_wrapped(estimate_rad: np.ndarray, wrapped_rad: np.ndarray, mask=None) -> np.ndarray:
    """Make a smooth unwrapped estimate consistent with the measured wrapped phase.

    Returns ``wrapped + 2 pi k`` with the integer ``k`` that brings it closest to
    ``estimate``, after aligning the estimate's arbitrary constant. The result keeps
    the measured phase differences exactly, where the Laplacian estimate alone is off
    by a smooth harmonic term.
    """
    estimate_rad = np.asarray(estimate_rad, dtype=np.float64)
    wrapped_rad = np.asarray(wrapped_rad, dtype=np.float64)
    region = np.ones(estimate_rad.shape, bool) if mask is None else np.asarray(mask, bool)
    constant = np.angle(np.sum(np.exp(1j * (wrapped_rad - estimate_rad))[region]))
    aligned = estimate_rad + constant
    k = np.round((aligned - wrapped_rad) / (2 * np.pi))
    return wrapped_rad + 2 * np.pi * k
