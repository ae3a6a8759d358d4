"""V-SHARP: variable-radius sophisticated harmonic artifact reduction for phase data.

References
----------
Schweser F, Deistung A, Lehr BW, Reichenbach JR. NeuroImage 2011;54:2789-2807 (SHARP).
Wu B, Li W, Guidon A, Liu C. Magn Reson Med 2012;67:137-147 (V-SHARP).
"""

from __future__ import annotations

import numpy as np

from ..fourier import bounding_box, fast_padded_shape, irfftn, pad_to, rfftn, sphere_kernel_rfft
from ._checks import check_field_and_mask

VSHARP_MAX_RADIUS_VOXELS = 18.0  # QSM.jl default: largest radius 18 x the smallest voxel size
VSHARP_MIN_RADIUS_VOXELS = 2.0  # ... down to 2 x the largest voxel size, in steps of that
BALL_INSIDE_FRACTION = 0.999  # a ball "fits" when the SMV of the mask is 1 (to rounding)


def default_vsharp_radii_mm(voxel_size_mm) -> np.ndarray:
    """Radii from 18 x the smallest voxel size down to 2 x the largest, in steps of that.

    This is the default of QSM.jl's ``vsharp``.

    References
    ----------
    Wu B, et al. Magn Reson Med 2012;67:137-147.
    """
    vsz = np.asarray(voxel_size_mm, dtype=float)
    step = VSHARP_MIN_RADIUS_VOXELS * vsz.max()
    largest = VSHARP_MAX_RADIUS_VOXELS * vsz.min()
    n_radii = int(np.floor((largest - step) / step + 1e-6)) + 1  # robust to rounding
    return largest - step * np.arange(max(n_radii, 1))



def vsharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    *,
    radii_mm=None,
    threshold: float = 0.05,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the background field with variable-radius SHARP.

    Harmonic (background) fields satisfy the mean value property, so subtracting
    the spherical mean (``(delta - rho_r) * field``) removes them. Each voxel takes
    the largest radius whose ball fits inside the mask; the result is deconvolved
    with the largest kernel using truncated SVD (``threshold``).

    The work is done on the mask's bounding box padded by the largest radius (zero
    padding cannot wrap a ball around), at fast FFT lengths, with real-to-complex
    FFTs in ``dtype`` and real kernel spectra. Per radius it costs one forward FFT for
    the kernel and two inverse FFTs (the erosion test and the high-passed field).

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
    dtype : numpy dtype
        Precision of the FFTs. float32 keeps about 6 significant digits of the total
        field, ample for local fields 1e-2 of it; pass float64 for bit-for-bit work.

    Returns
    -------
    local_field, eroded_mask : ndarray
        The local field (float64, zero outside) and the mask of voxels where it is valid.

    References
    ----------
    Schweser F, et al. NeuroImage 2011;54:2789-2807.
    Wu B, Li W, Guidon A, Liu C. Magn Reson Med 2012;67:137-147.
    """
    field, mask, voxel_size_mm = check_field_and_mask(field, mask, voxel_size_mm)
    if radii_mm is None:
        radii_mm = default_vsharp_radii_mm(voxel_size_mm)
    radii_mm = np.sort(np.atleast_1d(np.asarray(radii_mm, dtype=float)))[::-1]
    if radii_mm.size == 0 or radii_mm[-1] <= 0:
        raise ValueError(f"V-SHARP radii must be positive, got {radii_mm.tolist()}")
    if not 0 <= threshold < 1:
        raise ValueError(f"the V-SHARP threshold must be in [0, 1), got {threshold}")

    box = bounding_box(mask)
    pad_vox = np.ceil(radii_mm[0] / voxel_size_mm).astype(int) + 1
    sub_mask = mask[box]
    padded_shape = fast_padded_shape(sub_mask.shape, pad_vox)
    field_p, inner = pad_to((field[box] * sub_mask).astype(dtype), padded_shape)
    mask_p, _ = pad_to(sub_mask.astype(dtype), padded_shape)
    field_k = rfftn(field_p)
    mask_k = rfftn(mask_p)
    del field_p

    local = np.zeros(padded_shape, dtype=dtype)
    assigned = None
    work = np.empty(padded_shape, dtype=dtype)  # reused: warm pages make FFTs faster
    product = np.empty(field_k.shape, dtype=field_k.dtype)
    # Smallest radius first: the erosions are nested, so each larger radius that fits
    # simply overwrites, and every voxel ends with the largest radius whose ball fits.
    for radius in radii_mm[::-1]:
        smv = sphere_kernel_rfft(padded_shape, voxel_size_mm, radius, dtype=dtype, work=work)
        np.multiply(mask_k, smv, out=product)
        fits = irfftn(product, padded_shape, overwrite_x=True) > BALL_INSIDE_FRACTION
        if assigned is None:
            assigned = fits  # the output mask: where the smallest ball fits
        smv -= 1.0
        smv *= -1.0  # now the high-pass kernel delta - rho_r, in place
        if fits.any():
            np.multiply(field_k, smv, out=product)
            np.copyto(local, irfftn(product, padded_shape, overwrite_x=True), where=fits)
    del field_k, mask_k, product, work
    # Deconvolution by the largest kernel (the last one), truncated at ``threshold``.
    keep = np.abs(smv) >= threshold
    inverse = np.zeros_like(smv)
    np.divide(1.0, smv, out=inverse, where=keep)
    del smv, keep
    spectrum = rfftn(local)
    spectrum *= inverse
    local = irfftn(spectrum, padded_shape)
    eroded = assigned[inner]
    out = np.zeros(mask.shape)
    out[box] = np.where(eroded, local[inner], 0.0)
    eroded_full = np.zeros(mask.shape, dtype=bool)
    eroded_full[box] = eroded
    return out, eroded_full
