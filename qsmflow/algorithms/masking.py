"""Brain masks from GRE magnitude images.

References
----------
Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst Man
Cybern 1979;9:62-66.
Axel L, Costantini J, Listerud J. Intensity correction in surface-coil MR imaging.
AJR 1987;148:418-420 (homomorphic correction).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BIAS_SMOOTHING_MM = 20.0  # Gaussian sigma of the homomorphic bias estimate
# Otsu splits air from tissue when the field of view has air: the dark class is then
# noise, far below the bright class. When even the dark class is this bright relative to
# the bright one, there is no air in the field of view (a slab or a crop inside the head):
# every voxel with signal is kept, and vessels or dark nuclei are not cut out.
NO_BACKGROUND_CLASS_RATIO = 0.5
SIGNAL_FLOOR_FRACTION = 0.05  # of the robust maximum: below this a voxel has no signal
ROBUST_MAX_PERCENTILE = 99.0
CLOSING_MM = 2.0


def otsu_threshold(values: np.ndarray, *, n_bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (maximises the between-class variance).

    References
    ----------
    Otsu N. A threshold selection method from gray-level histograms.
    IEEE Trans Syst Man Cybern 1979;9:62-66.
    """
    hist, edges = np.histogram(values, bins=n_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    cum_mean = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_low = cum_mean / weight_low
        mean_high = (cum_mean[-1] - cum_mean) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    if not np.isfinite(between[:-1]).any():
        raise ValueError("Otsu's threshold needs at least two distinct intensities")
    return float(centres[np.nanargmax(between[:-1])])


def bias_corrected_magnitude(magnitude: np.ndarray, voxel_size_mm, *,
                             sigma_mm: float = BIAS_SMOOTHING_MM):
    """Divide out a smooth intensity bias (homomorphic correction).

    Receive-coil inhomogeneity at 3T and 7T makes a single global threshold fail;
    dividing by a heavily smoothed copy evens out intensity across the head.
    """
    magnitude = np.asarray(magnitude, dtype=np.float64)
    sigma_vox = sigma_mm / np.asarray(voxel_size_mm, dtype=float)
    support = (magnitude > 0).astype(np.float64)
    smooth = ndimage.gaussian_filter(magnitude, sigma_vox, mode="constant")
    norm = ndimage.gaussian_filter(support, sigma_vox, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = np.where(norm > 1e-3, smooth / np.maximum(norm, 1e-3), 0.0)
    positive = bias[bias > 0]
    floor = np.percentile(positive, 5) if positive.size else 1.0
    return magnitude / np.maximum(bias, floor)


def ball(radius_mm: float, voxel_size_mm) -> np.ndarray:
    """Boolean ball of ``radius_mm`` on a grid of ``voxel_size_mm`` (a structuring element)."""
    voxel_size_mm = np.asarray(voxel_size_mm, dtype=float)
    half = np.floor(radius_mm / voxel_size_mm).astype(int)
    axes = [np.arange(-h, h + 1) * v for h, v in zip(half, voxel_size_mm, strict=False)]
    xx, yy, zz = np.meshgrid(*axes, indexing="ij")
    return xx**2 + yy**2 + zz**2 <= radius_mm**2 + 1e-9


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def erode_mask(mask, radius_mm, voxel_size_mm):
    """Erosion by a ball; the world beyond the field of view counts as inside.

    A mask that reaches the edge of the field of view (a slab, a crop) continues beyond
    it, so the edge is no reason to erode; a head surrounded by air never reaches it.
    """
    return ndimage.binary_erosion(mask, structure=ball(radius_mm, voxel_size_mm),
                                  border_value=1)


def brain_mask(
    magnitude: np.ndarray,
    voxel_size_mm,
    *,
    threshold: float | None = None,
    opening_mm: float = 4.0,
    erode_mm: float = 1.0,
    fill_holes: bool = True,
) -> np.ndarray:
    """Brain mask from a (first-echo or echo-combined) magnitude image.

    Steps: homomorphic bias correction, Otsu threshold (or ``threshold`` as a
    fraction of the corrected intensity's 99th percentile), a morphological opening
    that cuts thin bridges to scalp and vessels, the largest connected component,
    hole filling (dark veins and sinuses inside the brain stay in), and a final
    erosion of ``erode_mm`` that trims the unreliable boundary phase.

    When the field of view holds no air (a slab or a crop inside the head: Otsu's dark
    class is then at least ``NO_BACKGROUND_CLASS_RATIO`` of the bright one), every voxel
    with signal is kept instead: thresholding tissue against tissue would cut out
    white matter, vessels and iron-rich nuclei. Erosions treat the world beyond the
    field of view as inside, so a mask touching the edge of the field of view keeps it.

    Parameters
    ----------
    magnitude : ndarray, 3-D
    voxel_size_mm : sequence of float
    threshold : float, optional
        Fraction (0-1) of the robust maximum of the bias-corrected magnitude.
    opening_mm, erode_mm : float
        Radii of the opening and of the final erosion, in mm.
    fill_holes : bool
        Close (2 mm) and fill holes, so that dark veins and sinuses inside stay in.

    References
    ----------
    Otsu N. IEEE Trans Syst Man Cybern 1979;9:62-66.
    """
    corrected = bias_corrected_magnitude(magnitude, voxel_size_mm)
    finite = corrected[np.isfinite(corrected) & (corrected > 0)]
    if finite.size == 0:
        raise ValueError("the magnitude image is zero everywhere: no brain mask can be made")
    robust_max = np.percentile(finite, ROBUST_MAX_PERCENTILE)
    if threshold is None:
        clipped = np.clip(finite, 0, robust_max)
        level = otsu_threshold(clipped)
        dark, bright = clipped[clipped <= level], clipped[clipped > level]
        if dark.size and bright.size and dark.mean() >= NO_BACKGROUND_CLASS_RATIO * bright.mean():
            level = SIGNAL_FLOOR_FRACTION * robust_max  # no air in view: keep all signal
    else:
        level = threshold * robust_max
    mask = np.isfinite(corrected) & (corrected > level)
    if opening_mm > 0:
        mask = ndimage.binary_dilation(erode_mask(mask, opening_mm, voxel_size_mm),
                                       structure=ball(opening_mm, voxel_size_mm))
    mask = largest_component(mask)
    if fill_holes:
        closing = ball(CLOSING_MM, voxel_size_mm)
        closed = erode_mask(ndimage.binary_dilation(mask, structure=closing), CLOSING_MM,
                        voxel_size_mm)
        mask = ndimage.binary_fill_holes(closed | mask)
    if erode_mm > 0:
        mask = erode_mask(mask, erode_mm, voxel_size_mm)
    return mask.astype(bool)
