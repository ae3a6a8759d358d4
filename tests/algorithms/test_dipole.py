"""The dipole forward model against analytic fields of a sphere and a cylinder."""

import numpy as np
import pytest

from qsmflow.algorithms.dipole import (
    b0_direction_from_affine,
    dipole_kernel_rfft,
    forward_field_ppm,
    voxel_size_from_affine,
)
from qsmflow.simulation.phantom import rigid_pose


def _coords(shape, voxel_size_mm):
    centre = (np.asarray(shape) - 1) / 2
    return [(np.arange(n) - c) * h for n, c, h in zip(shape, centre, voxel_size_mm, strict=False)]


def _partial_volume_ball(shape, voxel_size_mm, radius_mm, supersample=4):
    """Fraction of each voxel inside the ball, so that staircase errors stay small."""
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    fraction = np.zeros(shape)
    coords = _coords(shape, voxel_size_mm)
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                x, y, z = np.meshgrid(coords[0] + dx * voxel_size_mm[0],
                                      coords[1] + dy * voxel_size_mm[1],
                                      coords[2] + dz * voxel_size_mm[2], indexing="ij")
                fraction += x**2 + y**2 + z**2 <= radius_mm**2
    return fraction / supersample**3


@pytest.mark.parametrize("voxel_size_mm", [(1.0, 1.0, 1.0), (0.8, 1.0, 1.6)])
@pytest.mark.parametrize("b0_dir", [(0, 0, 1), (0.3, -0.2, 0.93)])
def test_sphere_field_matches_analytic(voxel_size_mm, b0_dir):
    """Outside a uniform sphere: dchi/3 (a/r)^3 (3 cos^2(theta) - 1); inside: 0 (Lorentz)."""
    shape = (64, 64, 48)
    radius_mm, dchi = 9.0, 0.4
    x, y, z = np.meshgrid(*_coords(shape, voxel_size_mm), indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    chi = dchi * _partial_volume_ball(shape, voxel_size_mm, radius_mm)
    b = np.asarray(b0_dir, float) / np.linalg.norm(b0_dir)
    field = forward_field_ppm(chi, voxel_size_mm, b, pad_vox=32)

    cos_t = (x * b[0] + y * b[1] + z * b[2]) / np.maximum(r, 1e-9)
    analytic = dchi / 3 * (radius_mm / np.maximum(r, 1e-9)) ** 3 * (3 * cos_t**2 - 1)
    shell = (r > radius_mm + 3) & (r < radius_mm + 12)
    err = np.abs(field[shell] - analytic[shell])
    # Discretisation of the sphere: 1.5% of dchi (the peak surface field is 2/3 dchi).
    assert err.max() < 0.015 * dchi
    inside = r < radius_mm - 3
    # Inside, the continuous kernel's truncation at Nyquist leaves up to ~2% for oblique B0.
    assert np.abs(field[inside]).max() < 0.025 * dchi


@pytest.mark.parametrize("voxel_size_mm", [(1.0, 1.0, 1.0), (0.8, 1.1, 1.5)])
@pytest.mark.parametrize("theta_deg,phi_deg", [(0.0, 0.0), (35.0, 30.0), (90.0, 0.0),
                                               (54.7, 120.0)])
def test_infinite_cylinder_inner_field(theta_deg, phi_deg, voxel_size_mm):
    """Inside an infinite cylinder at angle theta to B0: dchi (3 cos^2 theta - 1) / 6.

    B0 is oblique (azimuth phi about the cylinder) and voxels may be anisotropic: the
    inner field depends on theta only.
    """
    radius_mm, dchi = 12.0, 0.3
    # 24 slices: a fast FFT length, so that no padding along z breaks the periodicity.
    shape = tuple(int(round(e / h)) for e, h in zip((80, 80), voxel_size_mm[:2], strict=True))
    shape = shape + (24,)
    x, y, _ = np.meshgrid(*_coords(shape, voxel_size_mm), indexing="ij")
    # Partial-volume cross-section (4 x 4 subsamples): a staircase circle is not a circle,
    # and its inner field is not uniform for an oblique B0.
    offsets = (np.arange(4) + 0.5) / 4 - 0.5
    chi = dchi * np.mean([(x + dx * voxel_size_mm[0]) ** 2 + (y + dy * voxel_size_mm[1]) ** 2
                          <= radius_mm**2 for dx in offsets for dy in offsets], axis=0)
    t, p = np.deg2rad(theta_deg), np.deg2rad(phi_deg)
    b0 = np.array([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)])
    # No padding along z: the FFT's periodicity makes the cylinder infinite.
    pad = [int(64 / h) for h in voxel_size_mm[:2]] + [0]
    field = forward_field_ppm(chi, voxel_size_mm, b0, pad_vox=pad)
    core = x**2 + y**2 < (radius_mm - 4) ** 2
    expected = dchi * (3 * np.cos(t) ** 2 - 1) / 6
    np.testing.assert_allclose(field[core].mean(), expected, atol=0.01 * dchi)
    assert field[core].std() < 0.01 * dchi


def test_b0_direction_from_affine_oblique():
    """A grid rotated by 20 deg about x sees B0 tilted by 20 deg in voxel coordinates."""
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine = rigid_pose((20, 0, 0)) @ affine
    direction = b0_direction_from_affine(affine)
    np.testing.assert_allclose(direction, [0, np.sin(np.deg2rad(20)), np.cos(np.deg2rad(20))],
                               atol=1e-12)
    np.testing.assert_allclose(voxel_size_from_affine(affine), [1.5, 1.5, 2.0])


def test_b0_direction_ignores_axis_flips_and_scaling():
    affine = np.diag([-0.5, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(np.abs(b0_direction_from_affine(affine)), [0, 0, 1], atol=1e-12)


def test_dipole_kernel_values():
    kernel = dipole_kernel_rfft((8, 8, 8), (1, 1, 1), (0, 0, 1))
    assert kernel[0, 0, 0] == 0
    assert kernel[0, 0, 1] == pytest.approx(1 / 3 - 1)  # k parallel to B0: -2/3
    assert kernel[1, 0, 0] == pytest.approx(1 / 3)  # k perpendicular to B0
