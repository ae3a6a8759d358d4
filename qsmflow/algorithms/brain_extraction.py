"""Refinement of an intracranial mask to the brain: R2* and the CSF outside the brain.

A brain-extraction network trained on T1-weighted images (deepbet, ``qsmflow.dl``) finds
the intracranial volume of a GRE magnitude: the brain together with the CSF between the
brain and the inner skull. QSM wants the brain without that CSF rim (its phase carries
no tissue susceptibility, and the true brain of the benchmarks is GM + WM + deep gray +
ventricles). CSF is told from tissue by its low R2*, which does not depend on the
sequence's T1 or proton-density weighting: CSF decays at 1-4 s^-1, brain tissue at
12-25 s^-1 (3T) and more at 7T. Voxels of low R2* in a shell under the intracranial
surface are dropped; deeper CSF (the ventricles) stays.

References
----------
Fisch L, Zumdick S, Barkhau C, et al. deepbet: Fast brain extraction of T1-weighted MRI
using Convolutional Neural Networks. Comput Biol Med 2024;179:108845.
Peters AM et al. T2* measurements in human brain at 1.5, 3 and 7 T. Magn Reson Imaging
2007;25:748-753 (tissue and CSF R2*).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .masking import ball, largest_component

# The brain mask methods of the pipeline (--mask-method):
# deepbet: deepbet's intracranial mask, then the CSF rim removed by R2* (the default);
# deepbet-intracranial: deepbet's mask as it is (brain + the CSF under the skull);
# threshold: bias-corrected Otsu threshold and morphology (``masking.brain_mask``).
MASK_METHODS = ("deepbet", "deepbet-intracranial", "threshold")
DEFAULT_MASK_METHOD = "deepbet"
# Final erosion (mm) when none is asked for: the threshold method follows the inner skull
# and needs trimming; deepbet's masks end at the brain's (or the skull's) surface.
DEFAULT_ERODE_MM = {"deepbet": 0.0, "deepbet-intracranial": 0.0, "threshold": 1.0}
# The three constants below were chosen on the tuning heads of
# qsmflow.simulation.wholehead (BrainWeb 04 straight, 05 oblique; 1 mm, 3T, 5 echoes),
# never on its test heads (benchmarks/bench_brain_mask.py).
# Below this R2* (1/s) a voxel counts as CSF: between CSF (1-6 s^-1) and the lowest
# tissue R2* at 3T (gray matter, about 15-17 s^-1); 12 s^-1 already cuts into gray matter.
CSF_R2STAR_MAX_HZ = 10.0
# Depth under the intracranial surface within which low-R2* voxels are the CSF outside
# the brain (subarachnoid space and the outer sulci). Deeper CSF (ventricles) is kept.
OUTER_CSF_SHELL_MM = 16.0
# Shell voxels darker than this fraction of the median first-echo magnitude inside the
# intracranial mask have no tissue signal (bone, air, the skull base under a network mask
# that overreaches): they go too.
DARK_FRACTION = 0.25
# Opening radius that cuts the thin tissue strands left in the removed CSF rim.
TRIM_OPENING_MM = 3.0
MIN_ECHOES_FOR_R2STAR = 2


def r2star_loglinear(magnitude: np.ndarray, te_s, mask: np.ndarray) -> np.ndarray:
    """R2* (1/s) by a magnitude-squared weighted log-linear fit over echoes.

    Parameters
    ----------
    magnitude : ndarray, (x, y, z, n_echoes)
    te_s : sequence of float
        Echo times in seconds.
    mask : ndarray of bool, (x, y, z)
        Voxels to fit; R2* is 0 elsewhere.

    Returns
    -------
    ndarray, (x, y, z)
        R2* in 1/s; clipped at 0 (noise can make a slope positive).

    References
    ----------
    Gudbjartsson H, Patz S. The Rician distribution of noisy MRI data. Magn Reson Med
    1995;34:910-914 (weights: the log of a magnitude has variance 1/SNR^2).
    """
    magnitude = np.asarray(magnitude, dtype=np.float64)
    te = np.asarray(te_s, dtype=np.float64)
    if magnitude.ndim != 4 or magnitude.shape[-1] != te.size:
        raise ValueError(f"magnitude of shape {magnitude.shape} does not have one volume "
                         f"per echo time ({te.size})")
    if te.size < MIN_ECHOES_FOR_R2STAR:
        raise ValueError("an R2* fit needs at least two echoes")
    mask = np.asarray(mask, dtype=bool)
    values = np.maximum(magnitude[mask], np.finfo(float).tiny)
    weight = values**2
    log_s = np.log(values)
    sw = weight.sum(1)
    mean_t = (weight * te).sum(1) / sw
    mean_y = (weight * log_s).sum(1) / sw
    dt = te[None, :] - mean_t[:, None]
    slope = (weight * dt * (log_s - mean_y[:, None])).sum(1) / (weight * dt**2).sum(1)
    r2star = np.zeros(mask.shape)
    r2star[mask] = np.maximum(-slope, 0.0)
    return r2star


def remove_outer_csf(
    intracranial: np.ndarray,
    r2star_hz: np.ndarray,
    voxel_size_mm,
    *,
    first_echo: np.ndarray | None = None,
    csf_r2star_hz: float = CSF_R2STAR_MAX_HZ,
    shell_mm: float = OUTER_CSF_SHELL_MM,
    dark_fraction: float = DARK_FRACTION,
    opening_mm: float = TRIM_OPENING_MM,
) -> np.ndarray:
    """The brain inside an intracranial mask: the CSF rim under the skull removed.

    Voxels within ``shell_mm`` of the intracranial surface are dropped where their R2* is
    below ``csf_r2star_hz`` (CSF) or, given ``first_echo``, where its magnitude is below
    ``dark_fraction`` of its median in the mask (no tissue signal: bone, air). An
    opening of ``opening_mm`` cuts the strands left in the rim, the largest component is
    kept, and enclosed holes (veins, ventricles) are filled.

    Parameters
    ----------
    intracranial : ndarray of bool
    r2star_hz : ndarray
        R2* in 1/s on the same grid (``r2star_loglinear``).
    voxel_size_mm : sequence of float
    first_echo : ndarray, optional
        First-echo magnitude on the same grid.
    csf_r2star_hz, shell_mm, dark_fraction, opening_mm : float
        CSF's R2* ceiling (1/s), the depth of the outer shell (mm), the dark fraction and
        the opening radius (mm).
    """
    intracranial = np.asarray(intracranial, dtype=bool)
    if not intracranial.any():
        raise ValueError("the intracranial mask is empty")
    voxel_size_mm = np.asarray(voxel_size_mm, dtype=float)
    # Work in the mask's bounding box (with a margin): the same answer, several times faster.
    box = tuple(slice(max(int(i.min()) - 2, 0), int(i.max()) + 3)
                for i in np.nonzero(intracranial))
    inside = intracranial[box]
    depth_mm = ndimage.distance_transform_edt(inside, sampling=voxel_size_mm)
    drop = np.asarray(r2star_hz)[box] < csf_r2star_hz
    if first_echo is not None:
        echo = np.asarray(first_echo)[box]
        drop |= echo < dark_fraction * np.median(echo[inside])
    brain = inside & ~(drop & (depth_mm <= shell_mm))
    if opening_mm > 0:
        brain = ndimage.binary_opening(brain, structure=ball(opening_mm, voxel_size_mm))
    if not brain.any():
        raise ValueError("no tissue is left once the low-R2* CSF rim is removed: the "
                         "magnitude's echoes may be in the wrong order, or not decay")
    result = np.zeros_like(intracranial)
    result[box] = ndimage.binary_fill_holes(largest_component(brain))
    return result
