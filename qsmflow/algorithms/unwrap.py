"""Laplacian phase unwrapping.

References
----------
Ghiglia DC, Romero LA. Robust two-dimensional weighted and unweighted phase unwrapping
that uses fast transforms and iterative methods. J Opt Soc Am A 1994;11:107-117.
Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications.
Opt Lett 2003;28:1194-1196.
Li W, Wu B, Liu C. Quantitative susceptibility mapping of human brain reflects spatial
variation in tissue composition. NeuroImage 2011;55:1645-1656.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from .fourier import fft_workers
from .masking import largest_component

TWO_PI = 2.0 * np.pi
# A wrapped neighbour difference above this fraction of pi is as likely to be a true
# difference of the other sign (aliasing: the field changes by about pi per voxel, next
# to air and bone) as not; phase noise of a few tenths of a radian decides.
NEAR_PI_FRACTION = 0.8


def _neumann_laplacian_eigenvalues(shape, voxel_size_mm) -> np.ndarray:
    """Eigenvalues (1/mm^2) of the 7-point Laplacian with Neumann boundaries, DCT-II basis."""
    eigenvalues = 0.0
    for axis, (n, h) in enumerate(zip(shape, voxel_size_mm, strict=False)):
        view = [1] * len(shape)
        view[axis] = n
        axis_eigenvalues = (2.0 * np.cos(np.pi * np.arange(n) / n) - 2.0) / h**2
        eigenvalues = eigenvalues + axis_eigenvalues.reshape(view)
    return np.asarray(eigenvalues)


def _wrap_in_place(x: np.ndarray) -> np.ndarray:
    """Wrap to [-pi, pi] in place, with arithmetic only (no complex exponentials)."""
    x -= TWO_PI * np.round(x / TWO_PI)
    return x


def _wrapped_differences(phase_rad: np.ndarray, axis: int) -> np.ndarray:
    return _wrap_in_place(np.diff(phase_rad, axis=axis))


def _pairs_inside(mask: np.ndarray, axis: int) -> np.ndarray:
    n = mask.shape[axis]
    return np.take(mask, range(n - 1), axis=axis) & np.take(mask, range(1, n), axis=axis)


def phase_residues(phase_rad: np.ndarray) -> np.ndarray:
    """Voxels at the corners of plaquettes whose wrapped-gradient circulation is not zero.

    A residue marks where the wrapped phase is inconsistent (aliasing next to air, or
    noise in dark voxels): no unwrapping can honour every wrapped difference there, and
    a least-squares solution spreads the inconsistency into its surroundings.

    Returns
    -------
    ndarray of bool
    """
    phase_rad = np.asarray(phase_rad)
    if phase_rad.dtype != np.float32:
        phase_rad = phase_rad.astype(np.float64)  # float32 is exact enough for a pi threshold
    residues = np.zeros(phase_rad.shape, dtype=bool)
    for a1, a2 in ((0, 1), (1, 2), (0, 2)):
        d1 = _wrapped_differences(phase_rad, a1)
        d2 = _wrapped_differences(phase_rad, a2)
        lo1 = [slice(None)] * 3
        hi1 = [slice(None)] * 3
        lo2 = [slice(None)] * 3
        hi2 = [slice(None)] * 3
        lo1[a2], hi1[a2] = slice(0, -1), slice(1, None)
        lo2[a1], hi2[a1] = slice(0, -1), slice(1, None)
        circulation = d1[tuple(lo1)] + d2[tuple(hi2)] - d1[tuple(hi1)] - d2[tuple(lo2)]
        plaquette = np.abs(circulation) > np.pi
        for c1 in (0, 1):
            for c2 in (0, 1):
                corner = [slice(None)] * 3
                n1, n2 = phase_rad.shape[a1], phase_rad.shape[a2]
                corner[a1] = slice(c1, n1 - 1 + c1)
                corner[a2] = slice(c2, n2 - 1 + c2)
                residues[tuple(corner)] |= plaquette
    return residues


def near_pi_differences(phase_rad: np.ndarray, mask: np.ndarray, *,
                        fraction: float = NEAR_PI_FRACTION) -> np.ndarray:
    """Voxels of ``mask`` with an in-mask neighbour at a wrapped difference > ``fraction * pi``.

    Where the true phase changes by about pi from one voxel to the next (aliasing next to
    air or bone), the wrapped difference may have the wrong sign, and the unwrapped phase
    then carries a 2 pi step. When the aliasing runs along a whole surface it makes no
    residue (every plaquette's circulation is zero), so :func:`phase_residues` misses it.
    """
    mask = np.asarray(mask, dtype=bool)
    phase_rad = np.asarray(phase_rad, dtype=np.float64)
    near_pi = np.zeros(mask.shape, dtype=bool)
    for axis in range(3):
        steep = (np.abs(_wrapped_differences(phase_rad, axis)) > fraction * np.pi) \
            & _pairs_inside(mask, axis)
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        near_pi[tuple(lower)] |= steep
        near_pi[tuple(upper)] |= steep
    return near_pi


def reliable_phase_mask(phase_rad: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The part of ``mask`` where the wrapped phase can be unwrapped without 2 pi errors.

    ``mask`` without phase residues and near-pi differences, opened (one voxel) so that
    isolated leftovers go, and its largest connected component. Unwrapping inside it and
    handing it on to background removal keeps the inconsistency of those voxels out.

    Returns
    -------
    reliable : ndarray of bool
    n_excluded : int
        Voxels of ``mask`` at residues or near-pi differences.
    """
    mask = np.asarray(mask, dtype=bool)
    excluded = (phase_residues(phase_rad) | near_pi_differences(phase_rad, mask)) & mask
    reliable = largest_component(ndimage.binary_opening(mask & ~excluded))
    return reliable, int(excluded.sum())


def wrapped_laplacian(phase_rad: np.ndarray, voxel_size_mm, mask=None) -> np.ndarray:
    """Divergence of the wrapped phase gradient (1/mm^2), with zero flux across the edge.

    Where neighbouring phase differences are below pi this equals the Laplacian of the
    unwrapped phase, whatever the wraps. With ``mask``, only differences between two
    voxels inside the mask count (zero flux across the mask's surface), so the noise
    outside the brain does not leak in.
    """
    phase_rad = np.asarray(phase_rad, dtype=np.float64)
    mask = None if mask is None else np.asarray(mask, bool)
    divergence = np.zeros_like(phase_rad)
    for axis, h in enumerate(voxel_size_mm):
        flux = _wrapped_differences(phase_rad, axis)
        flux *= 1.0 / h**2
        if mask is not None:
            flux *= _pairs_inside(mask, axis)
        # Divergence with zero flux through the FOV's faces (Neumann): the difference
        # p[i+1] - p[i] adds to voxel i and subtracts from voxel i+1.
        lo = [slice(None)] * phase_rad.ndim
        hi = [slice(None)] * phase_rad.ndim
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        divergence[tuple(lo)] += flux
        divergence[tuple(hi)] -= flux
    return divergence


def laplacian_unwrap(phase_rad: np.ndarray, voxel_size_mm, mask=None) -> np.ndarray:
    """Unwrap phase by solving a Poisson equation for the wrapped phase Laplacian.

    The Laplacian of the unwrapped phase is computed from wrapped neighbour differences
    (:func:`wrapped_laplacian`) and inverted with a discrete cosine transform, which
    imposes Neumann boundaries at the edge of the field of view: no padding is needed
    and the FOV border adds no artefact. This is the least-squares form of Laplacian
    unwrapping; without a mask it returns the exact unwrapped phase (up to a constant)
    wherever the phase is sampled finely enough. With ``mask``, differences that leave
    the mask are ignored; the result then equals the unwrapped phase inside the mask up
    to a smooth function that is harmonic there, which background field removal takes
    out together with the background field. Anisotropic voxels enter with their
    physical spacing.

    Parameters
    ----------
    phase_rad : ndarray, 3-D
        Wrapped phase in rad.
    voxel_size_mm : sequence of float
    mask : ndarray of bool, optional
        Region whose phase differences are trusted (brain minus residues).

    Returns
    -------
    ndarray
        Unwrapped phase in rad, with zero mean over the volume.
    """
    phase_rad = np.asarray(phase_rad, dtype=np.float64)
    source = wrapped_laplacian(phase_rad, voxel_size_mm, mask)
    spectrum = sp_fft.dctn(source, type=2, norm="ortho", workers=fft_workers(),
                           overwrite_x=True)
    del source
    eigenvalues = _neumann_laplacian_eigenvalues(phase_rad.shape, voxel_size_mm)
    eigenvalues.flat[0] = 1.0
    spectrum /= eigenvalues
    del eigenvalues
    spectrum.flat[0] = 0.0  # the constant is free
    return sp_fft.idctn(spectrum, type=2, norm="ortho", workers=fft_workers(),
                        overwrite_x=True)

