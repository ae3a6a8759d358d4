"""Background field removal: V-SHARP.

References
----------
Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging of intrinsic
magnetic tissue properties using MRI signal phase: an approach to in vivo brain iron
metabolism? NeuroImage 2011;54:2789-2807.
Wu B, Li W, Guidon A, Liu C. Whole brain susceptibility mapping using compressed
sensing. Magn Reson Med 2012;67:137-147.
"""

from __future__ import annotations

import numpy as np

from .fourier import fast_padded_shape, irfftn, pad_to, rfftn, sphere_kernel_rfft


def default_vsharp_radii_mm(voxel_size_mm) -> np.ndarray:
    """Radii from 18 x the smallest voxel size down to 2 x the largest, in steps of that.

    This is the default of QSM.jl's ``vsharp``.
    """
    vsz = np.asarray(voxel_size_mm, dtype=float)
    step = 2.0 * vsz.max()
    largest = 18.0 * vsz.min()
    n_radii = int(np.floor((largest - step) / step + 1e-6)) + 1  # robust to rounding
    return largest - step * np.arange(max(n_radii, 1))


def vsharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    *,
    radii_mm=None,
    threshold: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the background field with variable-radius SHARP.

    Harmonic (background) fields satisfy the mean value property, so subtracting
    the spherical mean (``(delta - rho_r) * field``) removes them. Each voxel takes
    the largest radius whose ball fits inside the mask; the result is deconvolved
    with the largest kernel using truncated SVD (``threshold``).

    Parameters
    ----------
    field : ndarray, 3-D
        Total field (any unit; the local field comes back in the same unit).
    mask : ndarray of bool
    voxel_size_mm : sequence of float
    radii_mm : sequence of float, optional
        Kernel radii in mm; default :func:`default_vsharp_radii_mm`.
    threshold : float
        Truncation level of ``1 - rho_r(k)`` for the largest radius.

    Returns
    -------
    local_field, eroded_mask : ndarray
        The local field (zero outside) and the mask of voxels where it is valid.
    """
    field = np.asarray(field, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if radii_mm is None:
        radii_mm = default_vsharp_radii_mm(voxel_size_mm)
    radii_mm = np.sort(np.atleast_1d(np.asarray(radii_mm, dtype=float)))[::-1]
    if radii_mm.size == 0 or radii_mm[-1] <= 0:
        raise ValueError(f"V-SHARP radii must be positive, got {radii_mm.tolist()}")

    pad_vox = np.ceil(radii_mm[0] / np.asarray(voxel_size_mm, dtype=float)).astype(int) + 1
    padded_shape = fast_padded_shape(field.shape, pad_vox)
    field_p, inner = pad_to(field * mask, padded_shape)
    mask_p, _ = pad_to(mask.astype(np.float64), padded_shape)
    field_k = rfftn(field_p)
    mask_k = rfftn(mask_p)

    local = np.zeros(padded_shape)
    assigned = np.zeros(padded_shape, dtype=bool)
    largest_kernel = None
    for radius in radii_mm:
        smv = sphere_kernel_rfft(padded_shape, voxel_size_mm, radius)
        if largest_kernel is None:
            largest_kernel = 1.0 - smv
        # Voxels whose whole ball lies inside the mask.
        eroded = irfftn(mask_k * smv, padded_shape) > 0.999
        new = eroded & ~assigned
        if new.any():
            high_pass = irfftn(field_k * (1.0 - smv), padded_shape)
            local[new] = high_pass[new]
            assigned |= new

    inverse = np.where(np.abs(largest_kernel) < threshold, 0.0, 1.0 / np.where(
        np.abs(largest_kernel) < threshold, 1.0, largest_kernel))
    local = irfftn(rfftn(local) * inverse, padded_shape) * assigned
    return local[inner], assigned[inner]
