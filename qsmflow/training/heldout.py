"""Held-out validation for NSIDL v2: analytic spheres, a generator training never uses.

Each patch is a lumpy ellipsoidal mask holding non-overlapping uniform spheres
(tissue-like, and some strong as hemorrhage or calcification); chi is 0 elsewhere. The
field is the sum of the spheres' *analytic* fields at the voxel centres
(:func:`qsmflow.training.sources.sphere_field_ppm`: no FFT, no grid kernel) and the truth
is each voxel's volume fraction of each sphere (supersampled). Neither the bank's anatomy
nor its physics path enters, so NRMSE here is held-out in the card's sense.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .sources import sphere_field_ppm
from .synthetic_v2 import collate

SUPERSAMPLE = 3
N_SPHERES = (4, 12)
PHASE_NOISE_RAD = 0.01
PHASE_SCALE_RAD_PER_PPM = 16.0  # ~3T, TE 20 ms


def _fractions(points, centre, radius, voxel_size_mm):
    """Volume fraction of a sphere in each voxel, by SUPERSAMPLE^3 sub-samples."""
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    total = np.zeros(points.shape[1:], np.float32)
    for ox in offsets:
        for oy in offsets:
            for oz in offsets:
                shift = np.array([ox, oy, oz]) * voxel_size_mm
                d = points + shift[:, None, None, None] - np.asarray(centre)[:, None, None, None]
                total += (d ** 2).sum(0) <= radius ** 2
    return total / SUPERSAMPLE ** 3


def sphere_patch(rng, patch: int) -> dict:
    vsz = np.full(3, rng.uniform(0.8, 1.2)) if rng.random() < 0.6 else rng.uniform(0.7, 1.4, 3)
    tilt, azimuth = np.deg2rad(rng.uniform(0, 35)), rng.uniform(0, 2 * np.pi)
    b0 = np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth),
                   np.cos(tilt)])
    shape = (patch,) * 3
    points = (np.indices(shape, dtype=np.float64) - (patch - 1) / 2) * vsz[:, None, None, None]
    extent = patch * vsz / 2
    axes = extent * rng.uniform(0.7, 0.95, 3)
    lumps = ndimage.gaussian_filter(rng.standard_normal(shape), 4.0) * 8
    mask = ((points / axes[:, None, None, None]) ** 2).sum(0) <= 1 + lumps
    chi = np.zeros(shape, np.float32)
    field = np.zeros(shape)
    placed = []
    for _ in range(100):
        if len(placed) >= rng.integers(*N_SPHERES):
            break
        radius = rng.uniform(1.5, 7.0)
        centre = rng.uniform(-0.7, 0.7, 3) * (axes - radius)
        if any(np.linalg.norm(centre - c) < radius + r + 0.5 for c, r in placed):
            continue
        strong = rng.random() < 0.2
        value = rng.uniform(0.4, 1.2) * rng.choice([-1, 1]) if strong else rng.uniform(-0.1, 0.3)
        placed.append((centre, radius))
        chi += np.float32(value) * _fractions(points, centre, radius, vsz)
        field += sphere_field_ppm(points, centre, radius, value, b0)
    weight = mask.astype(np.float32)
    noise = PHASE_NOISE_RAD * rng.standard_normal(shape) / PHASE_SCALE_RAD_PER_PPM
    return {"field_ppm": (field + noise) * mask, "chi_ppm": chi * mask, "mask": mask,
            "weight": weight, "phase_scale": PHASE_SCALE_RAD_PER_PPM, "voxel_size_mm": vsz,
            "b0_direction": b0,
            "noise_sd_ppm": weight * np.float32(PHASE_NOISE_RAD / PHASE_SCALE_RAD_PER_PPM)}


def sphere_batches(seed: int, n_patches: int, patch: int, batch_size: int = 2):
    """Fixed validation batches of analytic-sphere patches."""
    rng = np.random.default_rng(seed)
    patches = [sphere_patch(rng, patch) for _ in range(n_patches)]
    return [collate(patches[i:i + batch_size]) for i in range(0, n_patches, batch_size)]
