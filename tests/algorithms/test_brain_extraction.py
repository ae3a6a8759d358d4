"""R2* fit and the removal of the CSF rim under the skull, against analytic answers."""

import numpy as np
import pytest

from qsmflow.algorithms.brain_extraction import (
    CSF_R2STAR_MAX_HZ,
    r2star_loglinear,
    remove_outer_csf,
)

TE_S = (0.005, 0.010, 0.015, 0.020, 0.025)


def test_r2star_of_noiseless_monoexponential_decay_is_exact(rng):
    r2star = rng.uniform(1.0, 60.0, size=(7, 5, 3))
    s0 = rng.uniform(0.5, 2.0, size=r2star.shape)
    magnitude = s0[..., None] * np.exp(-np.asarray(TE_S) * r2star[..., None])
    mask = np.ones(r2star.shape, bool)
    mask[0] = False
    fit = r2star_loglinear(magnitude, TE_S, mask)
    np.testing.assert_allclose(fit[mask], r2star[mask], rtol=1e-9)
    assert np.all(fit[~mask] == 0)


def test_r2star_needs_one_volume_per_echo_and_two_echoes():
    with pytest.raises(ValueError, match="one volume per echo"):
        r2star_loglinear(np.ones((3, 3, 3, 4)), TE_S, np.ones((3, 3, 3), bool))
    with pytest.raises(ValueError, match="two echoes"):
        r2star_loglinear(np.ones((3, 3, 3, 1)), TE_S[:1], np.ones((3, 3, 3), bool))


def _sphere(shape, centre, radius_mm, voxel_mm):
    grid = np.indices(shape).transpose(1, 2, 3, 0) * voxel_mm
    return np.linalg.norm(grid - np.asarray(centre) * voxel_mm, axis=-1) <= radius_mm


def test_outer_csf_rim_goes_and_ventricle_stays(rng):
    # A 30 mm brain (R2* 18/s) inside a 34 mm intracranial sphere whose 4 mm rim is CSF
    # (R2* 2/s), with a 6 mm CSF ventricle at its centre; voxels of 1.5 x 1.5 x 2 mm.
    voxel_mm = np.array([1.5, 1.5, 2.0])
    shape = (52, 52, 40)
    centre = np.array(shape) / 2
    brain = _sphere(shape, centre, 30.0, voxel_mm)
    intracranial = _sphere(shape, centre, 34.0, voxel_mm)
    ventricle = _sphere(shape, centre, 6.0, voxel_mm)
    r2star = np.where(brain & ~ventricle, 18.0, 2.0) + rng.normal(0, 1.0, shape)
    result = remove_outer_csf(intracranial, r2star, voxel_mm)
    dice = 2 * np.count_nonzero(result & brain) / (result.sum() + brain.sum())
    assert dice > 0.98
    assert result[ventricle].all()  # deep CSF is kept
    assert not result[intracranial & ~_sphere(shape, centre, 31.5, voxel_mm)].any()


def test_low_r2star_beyond_the_shell_is_kept():
    voxel_mm = np.ones(3)
    shape = (40, 40, 40)
    intracranial = _sphere(shape, np.array(shape) / 2, 18.0, voxel_mm)
    r2star = np.full(shape, CSF_R2STAR_MAX_HZ / 4)  # all CSF-like
    result = remove_outer_csf(intracranial, r2star, voxel_mm, shell_mm=8.0)
    kept = _sphere(shape, np.array(shape) / 2, 18.0 - 8.0, voxel_mm)
    dice = 2 * np.count_nonzero(result & kept) / (result.sum() + kept.sum())
    assert dice > 0.95
    with pytest.raises(ValueError, match="empty"):
        remove_outer_csf(np.zeros(shape, bool), r2star, voxel_mm)
    with pytest.raises(ValueError, match="no tissue is left"):
        remove_outer_csf(intracranial, r2star, voxel_mm, shell_mm=50.0)
