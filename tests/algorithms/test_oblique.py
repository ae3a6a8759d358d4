"""A tilted acquisition of the same object gives the same susceptibility.

The object is a set of uniform spheres inside a spherical "brain", next to an air sphere
outside it, in the scanner frame with B0 along z. Its field is analytic (the exact field
of each sphere, summed), so it is the same physical field on any grid and no forward FFT
model enters the data. Each grid samples the field, removes the background (V-SHARP) and
inverts (closed-form L2) with the B0 direction from its affine; the tilted result is
resampled onto the straight grid and compared there. Grids: 1.5 mm isotropic, and
1.4 x 1.4 x 2.0 mm tilted by (25, -15, 10) degrees.
"""

import numpy as np
import pytest
from scipy import ndimage

from qsmflow.algorithms.bgremove import vsharp
from qsmflow.algorithms.dipole import b0_direction_from_affine, voxel_size_from_affine
from qsmflow.algorithms.inversion import cfl2
from qsmflow.constants import AIR_MINUS_TISSUE_CHI_PPM
from qsmflow.simulation.phantom import rigid_pose

BRAIN_RADIUS_MM = 40.0
# (centre mm, radius mm, chi ppm relative to the brain)
SPHERES = [((-15.0, 10.0, 0.0), 8.0, 0.10), ((16.0, 8.0, 3.0), 7.0, -0.06),
           ((0.0, -15.0, 10.0), 6.0, 0.15), ((4.0, 6.0, -17.0), 7.0, 0.08)]
AIR_SPHERE = ((0.0, 30.0, -58.0), 12.0, AIR_MINUS_TISSUE_CHI_PPM)
FOV_MM = 112.0
SUPERSAMPLE = 3


def _grid_points(affine, shape):
    ijk = np.indices(shape, dtype=np.float64)
    return np.einsum("ij,j...->i...", affine[:3, :3], ijk) + affine[:3, 3].reshape(3, 1, 1, 1)


def _sphere_field(points, centre, radius, dchi):
    """Exact field (ppm) of a uniform sphere for B0 along scanner z; zero inside (Lorentz)."""
    d = points - np.asarray(centre).reshape(3, 1, 1, 1)
    r = np.sqrt((d**2).sum(0))
    cos_t = d[2] / np.maximum(r, 1e-9)
    return np.where(r > radius, dchi / 3 * (radius / np.maximum(r, radius)) ** 3
                    * (3 * cos_t**2 - 1), 0.0)


def _acquire(affine, shape):
    points = _grid_points(affine, shape)
    field = sum(_sphere_field(points, c, r, x) for c, r, x in SPHERES + [AIR_SPHERE])
    brain = np.sqrt((points**2).sum(0)) < BRAIN_RADIUS_MM
    return field, brain


def _chi_truth(affine, shape):
    """Partial-volume susceptibility on a grid (supersampled), for reference only."""
    chi = np.zeros(shape)
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                shifted = affine.copy()
                shifted[:3, 3] += affine[:3, :3] @ np.array([dx, dy, dz])
                points = _grid_points(shifted, shape)
                for centre, radius, value in SPHERES:
                    d = points - np.asarray(centre).reshape(3, 1, 1, 1)
                    chi += value * ((d**2).sum(0) <= radius**2)
    return chi / SUPERSAMPLE**3


def _process(affine, shape, b0_direction):
    field, brain = _acquire(affine, shape)
    vsz = voxel_size_from_affine(affine)
    local, eroded = vsharp(field, brain, vsz, radii_mm=[12.0, 9.0, 6.0, 4.0])
    chi = cfl2(local, eroded, vsz, b0_direction, lam=1e-3)
    return chi, eroded


def _centred_affine(rotation_deg, voxel_size_mm, shape):
    scale = np.diag(list(voxel_size_mm) + [1.0])
    centre = np.eye(4)
    centre[:3, 3] = -(np.asarray(shape) - 1) / 2.0
    return rigid_pose(rotation_deg) @ scale @ centre


def _resample(volume, source_affine, target_affine, target_shape):
    mapping = np.linalg.inv(source_affine) @ target_affine
    return ndimage.affine_transform(volume, mapping, output_shape=target_shape, order=1,
                                    mode="constant", cval=0.0)


def _nrmse(a, b, region):
    return float(np.linalg.norm((a - b)[region]) / np.linalg.norm(b[region]))


@pytest.fixture(scope="module")
def straight():
    vsz = (1.5, 1.5, 1.5)
    shape = tuple(int(FOV_MM / h) for h in vsz)
    affine = _centred_affine((0.0, 0.0, 0.0), vsz, shape)
    chi, eroded = _process(affine, shape, b0_direction_from_affine(affine))
    return affine, shape, chi, eroded


def _roi_means(chi, affine, shape):
    """Mean chi in the core of each sphere (2 mm inside its surface)."""
    points = _grid_points(affine, shape)
    means = []
    for centre, radius, _ in SPHERES:
        d = np.sqrt(((points - np.asarray(centre).reshape(3, 1, 1, 1)) ** 2).sum(0))
        means.append(chi[d < radius - 2.0].mean())
    return np.array(means)


@pytest.mark.parametrize("voxel_size_mm", [(1.5, 1.5, 1.5), (1.4, 1.4, 2.0)])
def test_tilted_acquisition_gives_the_same_chi(straight, voxel_size_mm):
    affine0, shape0, chi0, eroded0 = straight
    shape = tuple(int(FOV_MM / h) for h in voxel_size_mm)
    affine = _centred_affine((25.0, -15.0, 10.0), voxel_size_mm, shape)
    b0 = b0_direction_from_affine(affine)
    assert np.degrees(np.arccos(abs(b0[2]))) > 25  # B0 is far from the voxel z axis

    chi_tilted, eroded = _process(affine, shape, b0)
    back = _resample(chi_tilted, affine, affine0, shape0)
    region = eroded0 & (_resample(eroded.astype(float), affine, affine0, shape0) > 0.99)
    region &= ndimage.binary_erosion(region, iterations=2)
    truth = _chi_truth(affine0, shape0)

    # Region means, the quantity QSM studies report, agree to 0.01 ppm (measured <= 0.005
    # ppm; CFL2 underestimates all of them by ~5-15% on both grids alike).
    means0 = _roi_means(chi0, affine0, shape0)
    means_tilted = _roi_means(back, affine0, shape0)
    np.testing.assert_allclose(means_tilted, means0, atol=0.01)
    # Voxel-wise, the tilted map is as close to the truth as the straight one (measured
    # 0.31 vs 0.36 isotropic, 0.35 vs 0.36 anisotropic); linear resampling of the sharp
    # sphere edges dominates any voxel-wise tilted-vs-straight difference.
    assert _nrmse(back, truth, region) < 1.15 * _nrmse(chi0, truth, region)

    # Control: ignoring the obliquity (B0 along the voxel z axis) is clearly wrong:
    # region means drop by ~40% (0.04-0.05 ppm here).
    chi_wrong, _ = _process(affine, shape, (0.0, 0.0, 1.0))
    means_wrong = _roi_means(_resample(chi_wrong, affine, affine0, shape0), affine0, shape0)
    assert np.abs(means_wrong - means0).max() > 0.03
