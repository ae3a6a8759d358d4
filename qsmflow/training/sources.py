"""Random geometric sources for NSIDL v2 patches, with their field computed on a finer grid.

The sources (ellipsoids, vessel-like cylinders, and texture regions cut from smooth noise,
as in NeXtQSM's hybrid data) are drawn on a grid twice as fine as the patch on every axis;
their field comes from the continuous kernel ``1/3 - (k.b)^2/|k|^2`` on that grid (voxels
may be anisotropic) and both are reduced to the patch grid by cropping k-space
(``wholehead_kspace.kspace_reduce``). So the network's own discrete kernel on the patch
grid never makes its training field.

:func:`sphere_field_ppm` is the analytic field of uniform spheres (the held-out generator's
physics, no FFT at all).

References
----------
Marques JP, Bowtell R. Concepts Magn Reson B 2005;25B:65-78 (continuous kernel).
Cognolato F, et al. NeXtQSM. Med Image Anal 2023;84:102700.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from qsmflow.simulation.wholehead_kspace import kspace_reduce

SOURCE_FACTOR = 2  # fine grid of the sources: twice the patch resolution on every axis
N_SOURCES = (1, 8)
# chi of most sources (ppm) and of the strong ones (hemorrhage, calcification, air-like).
SOURCE_CHI_PPM = (-0.15, 0.45)
STRONG_CHI_PPM = (0.4, 1.6)
STRONG_FRACTION = 0.2


def continuous_field_ppm(chi_ppm, voxel_size_mm, b0_direction, *, pad_vox) -> np.ndarray:
    """Field (ppm) of ``chi_ppm`` with the continuous kernel on a zero-padded grid of
    anisotropic voxels; ``D(0) = 0``."""
    chi = np.asarray(chi_ppm, np.float32)
    padded_shape = [sfft.next_fast_len(n + 2 * p, real=True) for n, p in zip(
        chi.shape, pad_vox, strict=True)]
    inner = tuple(slice(p, p + n) for n, p in zip(chi.shape, pad_vox, strict=True))
    padded = np.zeros(padded_shape, np.float32)
    padded[inner] = chi
    b = np.asarray(b0_direction, float)
    b = b / np.linalg.norm(b)
    vsz = np.asarray(voxel_size_mm, float)
    freqs = [sfft.fftfreq(padded_shape[0], vsz[0]), sfft.fftfreq(padded_shape[1], vsz[1]),
             sfft.rfftfreq(padded_shape[2], vsz[2])]
    k = np.meshgrid(*[f.astype(np.float32) for f in freqs], indexing="ij", sparse=True)
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    kb = k[0] * np.float32(b[0]) + k[1] * np.float32(b[1]) + k[2] * np.float32(b[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.float32(1.0 / 3.0) - kb * kb / k2
    kernel[0, 0, 0] = 0.0
    field = sfft.irfftn(sfft.rfftn(padded) * kernel, padded_shape)
    return np.ascontiguousarray(field[inner], np.float32)


def sphere_field_ppm(points_mm, centre_mm, radius_mm: float, chi_ppm: float,
                     b0_direction) -> np.ndarray:
    """Analytic (Lorentz-corrected) field of a uniform sphere: 0 inside, a dipole outside,
    ``chi a^3 (3 cos^2 theta - 1) / (3 r^3)``. ``points_mm`` is (3, ...)."""
    d = np.asarray(points_mm, float) - np.asarray(centre_mm, float).reshape(
        3, *([1] * (np.ndim(points_mm) - 1)))
    b = np.asarray(b0_direction, float) / np.linalg.norm(b0_direction)
    r2 = (d ** 2).sum(0)
    r = np.sqrt(np.maximum(r2, 1e-12))
    cos2 = np.einsum("i,i...->...", b, d) ** 2 / np.maximum(r2, 1e-12)
    out = chi_ppm * radius_mm ** 3 * (3 * cos2 - 1) / (3 * r ** 3)
    return np.where(r > radius_mm, out, 0.0)


def _rotation(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def draw_sources(rng, shape, voxel_size_mm) -> np.ndarray:
    """chi (ppm) of 1-7 random ellipsoids, cylinders and texture regions on ``shape``."""
    chi = np.zeros(shape, np.float32)
    vsz = np.asarray(voxel_size_mm, np.float32)
    grid = np.indices(shape, dtype=np.float32) * vsz[:, None, None, None]
    extent = np.asarray(shape) * vsz
    for _ in range(int(rng.integers(*N_SOURCES))):
        strong = rng.random() < STRONG_FRACTION
        value = (rng.uniform(*STRONG_CHI_PPM) * rng.choice([-1, 1]) if strong
                 else rng.uniform(*SOURCE_CHI_PPM))
        kind = rng.choice(["ellipsoid", "cylinder", "texture"], p=[0.45, 0.3, 0.25])
        if kind == "texture":
            smooth = ndimage.gaussian_filter(rng.standard_normal(shape, np.float32),
                                             rng.uniform(1.0, 4.0) / vsz, truncate=2.5)
            region = smooth > np.quantile(smooth, rng.uniform(0.7, 0.95))
            chi[region] += np.float32(value) * 0.5
            continue
        centre = rng.uniform(0.15, 0.85, 3) * extent
        d = np.einsum("ij,j...->i...", _rotation(rng).T.astype(np.float32),
                      grid - centre[:, None, None, None].astype(np.float32))
        if kind == "ellipsoid":
            axes = rng.uniform(1.0, 9.0, 3)
            region = ((d / axes[:, None, None, None]) ** 2).sum(0) <= 1
        else:  # a vessel-like cylinder along a random direction
            radius = rng.uniform(0.5, 3.0)
            region = (d[0] ** 2 + d[1] ** 2 <= radius ** 2) & (np.abs(d[2]) < rng.uniform(5, 40))
        chi[region] = value
    return chi


def patch_sources(rng, brain, voxel_size_mm, b0_direction) -> tuple[np.ndarray, np.ndarray]:
    """chi and field (ppm) of random sources inside ``brain``, on the patch grid.

    Drawn on a grid ``SOURCE_FACTOR`` times finer (the brain upsampled by nearest
    neighbour), field by the continuous kernel there, both reduced in k-space.
    """
    f = SOURCE_FACTOR
    fine_vsz = np.asarray(voxel_size_mm, float) / f
    fine_shape = tuple(n * f for n in brain.shape)
    # kspace_reduce centres output voxel j on fine voxel f*j: fine voxel i belongs to the
    # patch voxel nearest to i / f.
    fine_brain = brain
    for axis, n in enumerate(fine_shape):
        nearest = np.minimum(np.rint(np.arange(n) / f).astype(int), brain.shape[axis] - 1)
        fine_brain = np.take(fine_brain, nearest, axis=axis)
    chi_fine = draw_sources(rng, fine_shape, fine_vsz) * fine_brain
    field = continuous_field_ppm(chi_fine, fine_vsz, b0_direction,
                                 pad_vox=[n // 4 for n in fine_shape])
    return kspace_reduce(chi_fine, f), kspace_reduce(field, f)
