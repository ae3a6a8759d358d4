"""Shared Fourier-domain helpers: fast padded sizes, bounding boxes, k-space grids, kernels."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy import fft as sp_fft


def available_cpus() -> int:
    """CPUs this process may run on: its affinity (taskset, SLURM/PBS cpusets), not the node's.

    scipy's ``workers=-1`` means ``os.cpu_count()``, every core of the node, which
    oversubscribes a job given a few of them.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_fft_workers = available_cpus()


def fft_workers() -> int:
    """Threads the FFTs of qsmflow use now (default: :func:`available_cpus`)."""
    return _fft_workers


@contextmanager
def fft_threads(n_threads: int) -> Iterator[None]:
    """Run qsmflow's FFTs with ``n_threads`` threads inside the block (a node's ``n_procs``)."""
    global _fft_workers
    if int(n_threads) < 1:
        raise ValueError(f"the number of FFT threads must be >= 1, got {n_threads}")
    previous, _fft_workers = _fft_workers, int(n_threads)
    try:
        yield
    finally:
        _fft_workers = previous


def fast_padded_shape(shape, pad_vox) -> tuple[int, ...]:
    """Shape padded by ``pad_vox`` voxels on each side, rounded up to fast FFT lengths."""
    pad = np.broadcast_to(np.asarray(pad_vox, dtype=int), (len(shape),))
    return tuple(sp_fft.next_fast_len(int(n + 2 * p), real=True)
                 for n, p in zip(shape, pad, strict=True))


def bounding_box(mask: np.ndarray, margin_vox=0) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask``, grown by ``margin_vox`` (clipped to the array).

    Working on the box instead of the whole field of view makes every FFT of a
    background-removal or unwrapping step smaller: the brain fills about half of a
    typical GRE field of view.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the mask is empty")
    margin = np.broadcast_to(np.asarray(margin_vox, dtype=int), (mask.ndim,))
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        lo = max(int(present[0]) - int(margin[axis]), 0)
        hi = min(int(present[-1]) + 1 + int(margin[axis]), mask.shape[axis])
        slices.append(slice(lo, hi))
    return tuple(slices)


def pad_to(array: np.ndarray, padded_shape) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pad ``array`` centred in ``padded_shape``; return it and the slices of the original."""
    before = [(p - n) // 2 for n, p in zip(array.shape, padded_shape, strict=False)]
    slices = tuple(slice(b, b + n) for b, n in zip(before, array.shape, strict=False))
    out = np.zeros(padded_shape, dtype=array.dtype)
    out[slices] = array
    return out, slices


def kspace_grid(shape, voxel_size_mm, *, real: bool = True) -> tuple[np.ndarray, ...]:
    """Spatial frequencies in cycles/mm for an (r)FFT of ``shape``, as broadcastable arrays.

    With ``real=True`` the last axis has ``n // 2 + 1`` entries, matching ``scipy.fft.rfftn``.
    """
    grids = []
    ndim = len(shape)
    for axis, (n, h) in enumerate(zip(shape, voxel_size_mm, strict=False)):
        if real and axis == ndim - 1:
            k = sp_fft.rfftfreq(n, d=h)
        else:
            k = sp_fft.fftfreq(n, d=h)
        view = [1] * ndim
        view[axis] = k.size
        grids.append(k.reshape(view))
    return tuple(grids)


def rfftn(x: np.ndarray, shape=None) -> np.ndarray:
    """Real-to-complex FFT over all axes, threaded; float32 input gives complex64."""
    return sp_fft.rfftn(x, s=shape, workers=_fft_workers)


def irfftn(x: np.ndarray, shape, *, overwrite_x: bool = False) -> np.ndarray:
    """Inverse of :func:`rfftn`; complex64 input gives float32.

    ``overwrite_x=True`` lets the transform use ``x`` as scratch (it saves a copy of the
    spectrum): pass it only for a spectrum that is not needed afterwards.
    """
    return sp_fft.irfftn(x, s=shape, workers=_fft_workers, overwrite_x=overwrite_x)


def ball_offsets(voxel_size_mm, radius_mm: float) -> np.ndarray:
    """Boolean ball of ``radius_mm`` (a sphere in mm, so an ellipsoid in voxels), centred."""
    voxel_size_mm = np.asarray(voxel_size_mm, dtype=float)
    half = np.floor(radius_mm / voxel_size_mm + 1e-9).astype(int)
    axes = [np.arange(-h, h + 1) * v for h, v in zip(half, voxel_size_mm, strict=False)]
    xx, yy, zz = np.meshgrid(*axes, indexing="ij")
    return xx**2 + yy**2 + zz**2 <= radius_mm**2 * (1 + 1e-12)


def sphere_kernel_rfft(padded_shape, voxel_size_mm, radius_mm: float, *,
                       dtype=np.float64, work: np.ndarray | None = None) -> np.ndarray:
    """rFFT of a normalised ball (spherical mean value kernel) of ``radius_mm`` at the origin.

    The ball is sampled on the voxel grid in physical units, so anisotropic voxels
    give an ellipsoid in voxel space that is a sphere in millimetres. The ball is
    symmetric about the origin, so its spectrum is real: it is returned as a real
    array of ``dtype`` (half the memory and a cheaper product than a complex one).
    ``work``, a real array of ``padded_shape`` and ``dtype``, is reused for the spatial
    kernel: memory already touched makes the FFT up to 3x faster than fresh zero pages.
    """
    ball = ball_offsets(voxel_size_mm, radius_mm).astype(dtype)
    ball /= ball.sum()
    half = [(n - 1) // 2 for n in ball.shape]
    kernel = np.empty(padded_shape, dtype=dtype) if work is None else work
    kernel.fill(0)
    idx = [np.arange(-h, h + 1) % n for h, n in zip(half, padded_shape, strict=False)]
    kernel[np.ix_(*idx)] = ball
    return np.ascontiguousarray(rfftn(kernel).real)
