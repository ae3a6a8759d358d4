"""What makes an NSIDL v2 training input look like the pipeline's output.

* the mask eroded or dilated by 0-3 mm (a brain mask is never the true brain);
* a residual harmonic background: solid harmonics of order 1-3 and the fields of spheres
  outside the mask (what background removal leaves; harmonic inside the mask);
* an error at the mask edge: smooth, decaying with the distance from the edge, and not
  harmonic (what LBV/V-SHARP get wrong next to the boundary);
* the data weight W from a simulated magnitude (with signal dropout near the edge, as next
  to air and bone), and phase noise that follows it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qsmflow.simulation.wholehead_kspace import harmonic_sum

from .sources import sphere_field_ppm

MASK_CHANGE_MM = 3.0  # masks are eroded or dilated by up to this much
RESIDUAL_RMS_PPM = (0.0, 0.006)  # residual background inside the mask (local fields: ~0.01)
EDGE_ERROR_PPM = (0.0, 0.02)
EDGE_DECAY_MM = (1.0, 4.0)
MIN_WEIGHT = 0.2
B0_CHOICES_T = (1.5, 3.0, 3.0, 7.0)
TE_RANGE_S = (0.008, 0.025)
PHASE_NOISE_RANGE_RAD = (0.003, 0.03)
# With a noise-conditioned network (--noise-input), this share of patches is clean: the
# true mask, no residual background, edge error or noise (noise sd 0). The network can
# then tell perfect data (an inversion from a true local field) from the pipeline's.
CLEAN_FRACTION = 0.25
# Signal loss near air and bone (through-voxel dephasing by background gradients): smooth
# dark regions, strongest at the mask edge, fading over a few mm inwards.
DROPOUT_DEPTH = (0.0, 0.9)
DROPOUT_DECAY_MM = (3.0, 10.0)
HARMONIC_RADIUS_MM = 50.0
SPHERE_GAP_MM = 3.0  # residual-background spheres lie this far outside the mask at least


def change_mask(mask, voxel_size_mm, change_mm: float) -> np.ndarray:
    """The mask dilated (``change_mm > 0``) or eroded (< 0) by ``|change_mm|`` mm (Euclidean
    distance in mm, so anisotropic voxels are handled)."""
    mask = np.asarray(mask, bool)
    if change_mm == 0 or not mask.any():
        return mask.copy()
    if change_mm > 0:
        return ndimage.distance_transform_edt(~mask, sampling=voxel_size_mm) <= change_mm
    return ndimage.distance_transform_edt(mask, sampling=voxel_size_mm) > -change_mm


def _centred_mm(shape, voxel_size_mm):
    return [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * np.float32(v)).reshape(
        [-1 if a == axis else 1 for a in range(3)])
            for axis, (n, v) in enumerate(zip(shape, voxel_size_mm, strict=True))]


def residual_background_ppm(rng, mask, voxel_size_mm, b0_direction) -> np.ndarray:
    """A random field harmonic inside ``mask``: solid harmonics of order 1-3 about the patch
    centre plus 0-3 spheres lying wholly outside the mask; scaled to a random rms."""
    shape = mask.shape
    x, y, z = np.broadcast_arrays(*_centred_mm(shape, voxel_size_mm))
    r = np.float32(HARMONIC_RADIUS_MM)
    coefficients = rng.standard_normal(16) * 0.3 ** np.array(
        [0] + [1] * 3 + [2] * 5 + [3] * 7)
    coefficients[0] = 0.0
    field = harmonic_sum(x / r, y / r, z / r, coefficients).astype(np.float64)
    outside = ndimage.distance_transform_edt(~mask, sampling=voxel_size_mm)
    points = np.stack([x, y, z])
    for _ in range(int(rng.integers(0, 4))):
        radius = rng.uniform(2.0, 8.0)
        candidates = np.argwhere(outside > radius + SPHERE_GAP_MM)
        if not len(candidates):
            break
        centre = points[(slice(None), *candidates[rng.integers(len(candidates))])]
        field += sphere_field_ppm(points, centre, radius, rng.uniform(-3.0, 3.0),
                                  b0_direction)
    inside = field[mask]
    rms = np.sqrt(np.mean((inside - inside.mean()) ** 2)) if mask.any() else 0.0
    return (field * rng.uniform(*RESIDUAL_RMS_PPM) / max(rms, 1e-12)).astype(np.float32)


def edge_error_ppm(rng, mask, voxel_size_mm) -> np.ndarray:
    """Smooth random error, largest at the mask edge and decaying inwards."""
    depth = ndimage.distance_transform_edt(mask, sampling=voxel_size_mm)
    smooth = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 3.0 / np.asarray(
        voxel_size_mm))
    smooth /= smooth.std() + 1e-12
    decay = np.exp(-depth / rng.uniform(*EDGE_DECAY_MM))
    return (rng.uniform(*EDGE_ERROR_PPM) * smooth * decay * mask).astype(np.float32)


def signal_dropout(rng, mask, voxel_size_mm) -> np.ndarray:
    """Magnitude factor in (0.1, 1]: smooth dark patches that fade from the mask edge."""
    depth = ndimage.distance_transform_edt(mask, sampling=voxel_size_mm)
    blobs = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 4.0 / np.asarray(
        voxel_size_mm))
    blobs = np.clip(blobs / (blobs.std() + 1e-12), 0.0, 1.0)  # dark where above 0, full at 1 sd
    fade = np.exp(-depth / rng.uniform(*DROPOUT_DECAY_MM))
    return 1.0 - rng.uniform(*DROPOUT_DEPTH) * blobs * fade


def weight_and_noise(rng, mask, m0, r2star_3t_hz, voxel_size_mm, *, noise_free=False):
    """W in [MIN_WEIGHT, 1] inside the mask (0 outside) from the magnitude at a random B0
    and TE (with signal dropout near the edge), the field noise (ppm) that follows it, the
    phase scale ``s`` (rad/ppm) and the noise's sd per voxel (ppm); ``noise_free`` gives
    zero noise (the same random numbers are drawn either way)."""
    from qsmflow.constants import rad_per_ppm

    b0_t = float(rng.choice(B0_CHOICES_T))
    te_s = rng.uniform(*TE_RANGE_S)
    magnitude = m0 * np.exp(-r2star_3t_hz * (b0_t / 3.0) * te_s)  # R2* ~ proportional to B0
    magnitude = magnitude * signal_dropout(rng, mask, voxel_size_mm)
    reference = np.median(magnitude[mask]) if mask.any() else 1.0
    weight = np.clip(magnitude / max(reference, 1e-6), MIN_WEIGHT, 1.0) * mask
    scale = rad_per_ppm(b0_t, te_s)
    sd_rad = rng.uniform(*PHASE_NOISE_RANGE_RAD)  # drawn either way: one random stream
    if noise_free:
        sd_rad = 0.0
    sd_ppm = sd_rad / np.maximum(weight, MIN_WEIGHT) / scale * mask
    noise = sd_ppm * rng.standard_normal(mask.shape)
    return (weight.astype(np.float32), noise.astype(np.float32), scale,
            sd_ppm.astype(np.float32))
