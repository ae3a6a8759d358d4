"""v2 training physics: the fine-grid field reduced in k-space matches the analytic sphere."""

import numpy as np
import pytest

from qsmflow.training.bank import reduced_field_ppm
from qsmflow.training.sources import continuous_field_ppm, patch_sources, sphere_field_ppm

CHI_PPM = 0.2
RADIUS_MM = 6.0


def _sphere_fraction(n, voxel_mm, radius_mm, sub=4):
    """Volume fraction of a sphere centred on voxel (n-1)/2, by sub^3 sub-samples."""
    x = (np.arange(n) - (n - 1) / 2) * voxel_mm
    offsets = ((np.arange(sub) + 0.5) / sub - 0.5) * voxel_mm
    xs = (x[:, None] + offsets[None, :]) ** 2
    d2 = xs[:, :, None, None, None, None] + xs[None, None, :, :, None, None] + \
        xs[None, None, None, None, :, :]
    return (d2 <= radius_mm ** 2).mean(axis=(1, 3, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def reduced_sphere():
    n, fine_mm = 96, 0.5
    b0 = np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93])
    field, chi = reduced_field_ppm(CHI_PPM * _sphere_fraction(n, fine_mm, RADIUS_MM), fine_mm,
                                   b0, 2, pad_vox=48)
    # Output voxel j sits on fine voxel 2j.
    x = (np.arange(field.shape[0]) * 2 - (n - 1) / 2) * fine_mm
    points = np.stack(np.meshgrid(x, x, x, indexing="ij"))
    return field, chi, points, b0


def test_reduced_field_of_a_sphere_is_the_analytic_dipole_outside_and_zero_inside(
        reduced_sphere):
    field, chi, points, b0 = reduced_sphere
    r = np.sqrt((points ** 2).sum(0))
    analytic = sphere_field_ppm(points, (0, 0, 0), RADIUS_MM, CHI_PPM, b0)
    scale = CHI_PPM / 3  # the field's largest magnitude on the sphere's surface
    near = (r >= 1.5 * RADIUS_MM) & (r < 3 * RADIUS_MM)
    err = field[near] - analytic[near]
    # Band-limiting at 1 mm rings next to the surface: rms 0.7 %, peak 6.3 % measured.
    assert np.sqrt(np.mean(err ** 2)) < 0.015 * scale
    assert np.abs(err).max() < 0.08 * scale
    far = (r >= 3 * RADIUS_MM) & (r < 4 * RADIUS_MM)
    assert np.abs(field[far] - analytic[far]).max() < 0.015 * scale
    inside = r <= 0.5 * RADIUS_MM
    assert abs(field[inside].mean()) < 0.01 * scale  # Lorentz-corrected: 0 inside
    assert np.sqrt(np.mean(field[inside] ** 2)) < 0.05 * scale
    assert chi[inside].mean() == pytest.approx(CHI_PPM, rel=0.01)


def test_anisotropic_continuous_kernel_agrees_with_the_isotropic_one(rng):
    chi = rng.normal(size=(20, 18, 16)).astype(np.float32)
    b0 = (0.2, -0.1, 0.97)
    from qsmflow.simulation.wholehead_kspace import continuous_dipole_field_ppm

    ours = continuous_field_ppm(chi, (0.7, 0.7, 0.7), b0, pad_vox=(8, 8, 8))
    theirs = continuous_dipole_field_ppm(chi, 0.7, b0, pad_vox=8)
    # Different fast padded lengths: agreement to the wrap-around of a random source.
    assert np.abs(ours - theirs).max() < 0.02 * np.abs(theirs).max()
    # Stretching the voxels along B0's axis changes the field (anisotropy is used).
    stretched = continuous_field_ppm(chi, (0.7, 0.7, 1.4), b0, pad_vox=(8, 8, 8))
    assert np.abs(stretched - ours).max() > 0.1 * np.abs(ours).max()


def test_patch_sources_stay_in_the_brain_and_are_reduced_consistently(rng):
    brain = np.zeros((24, 22, 20), bool)
    brain[4:20, 4:18, 4:16] = True
    chi, field = patch_sources(rng, brain, (1.0, 0.8, 1.2), (0.0, 0.3, 0.95))
    assert chi.shape == field.shape == brain.shape
    # Outside the brain only the ringing of the k-space crop remains, next to its edge.
    from scipy import ndimage

    far = ndimage.distance_transform_edt(~brain) > 3
    assert np.abs(chi[far]).max() < 0.05 * np.abs(chi[brain]).max()
    assert np.abs(field[far]).max() > 1e-4  # the field reaches outside the sources
