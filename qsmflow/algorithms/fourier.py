"""Shared Fourier-domain helpers: fast padded sizes and k-space grids."""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

FFT_WORKERS = -1  # scipy.fft: use all threads that the process is allowed


def fast_padded_shape(shape, pad_vox) -> tuple[int, ...]:
    """Shape padded by ``pad_vox`` voxels on each side, rounded up to fast FFT lengths."""
    pad = np.broadcast_to(np.asarray(pad_vox, dtype=int), (len(shape),))
    return tuple(sp_fft.next_fast_len(int(n + 2 * p), real=True) for n, p in zip(shape, pad))


def pad_to(array: np.ndarray, padded_shape) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pad ``array`` centred in ``padded_shape``; return it and the slices of the original."""
    before = [(p - n) // 2 for n, p in zip(array.shape, padded_shape)]
    slices = tuple(slice(b, b + n) for b, n in zip(before, array.shape))
    out = np.zeros(padded_shape, dtype=array.dtype)
    out[slices] = array
    return out, slices


def kspace_grid(shape, voxel_size_mm, *, real: bool = True) -> tuple[np.ndarray, ...]:
    """Spatial frequencies in cycles/mm for an (r)FFT of ``shape``, as broadcastable arrays.

    With ``real=True`` the last axis has ``n // 2 + 1`` entries, matching ``scipy.fft.rfftn``.
    """
    grids = []
    ndim = len(shape)
    for axis, (n, h) in enumerate(zip(shape, voxel_size_mm)):
        if real and axis == ndim - 1:
            k = sp_fft.rfftfreq(n, d=h)
        else:
            k = sp_fft.fftfreq(n, d=h)
        view = [1] * ndim
        view[axis] = k.size
        grids.append(k.reshape(view))
    return tuple(grids)


def rfftn(x: np.ndarray, shape=None) -> np.ndarray:
    return sp_fft.rfftn(x, s=shape, workers=FFT_WORKERS)


def irfftn(x: np.ndarray, shape) -> np.ndarray:
    return sp_fft.irfftn(x, s=shape, workers=FFT_WORKERS)


def sphere_kernel_rfft(padded_shape, voxel_size_mm, radius_mm: float) -> np.ndarray:
    """rFFT of a normalised ball (spherical mean value kernel) of ``radius_mm`` at the origin.

    The ball is sampled on the voxel grid in physical units, so anisotropic voxels
    give an ellipsoid in voxel space that is a sphere in millimetres.
    """
    voxel_size_mm = np.asarray(voxel_size_mm, dtype=float)
    half = np.ceil(radius_mm / voxel_size_mm).astype(int)
    axes = [np.arange(-h, h + 1) * v for h, v in zip(half, voxel_size_mm)]
    xx, yy, zz = np.meshgrid(*axes, indexing="ij")
    ball = (xx**2 + yy**2 + zz**2 <= radius_mm**2).astype(np.float64)
    ball /= ball.sum()
    kernel = np.zeros(padded_shape, dtype=np.float64)
    idx = [np.arange(-h, h + 1) % n for h, n in zip(half, padded_shape)]
    kernel[np.ix_(*idx)] = ball
    return rfftn(kernel)
