"""Laplacian unwrapping of known wrap patterns."""

import numpy as np
import pytest

from qsmflow.algorithms.echo_combination import wrap_to_pi
from qsmflow.algorithms.unwrap import (
    laplacian_unwrap,
    near_pi_differences,
    phase_residues,
    reliable_phase_mask,
)


def _smooth_phase(shape, voxel_size_mm, amplitude_rad):
    grids = np.meshgrid(*[np.arange(n) * h for n, h in zip(shape, voxel_size_mm, strict=False)],
                        indexing="ij")
    x, y, z = (g / g.max() for g in grids)
    return amplitude_rad * (np.sin(2.2 * x + 0.3) * np.cos(1.7 * y) + 0.8 * (z - 0.5) ** 2
                            + 0.5 * x * y)


@pytest.mark.parametrize("voxel_size_mm", [(1.0, 1.0, 1.0), (0.7, 0.9, 2.0)])
def test_laplacian_unwrap_recovers_smooth_phase(voxel_size_mm):
    shape = (48, 40, 24)
    truth = _smooth_phase(shape, voxel_size_mm, amplitude_rad=25.0)
    wrapped = wrap_to_pi(truth)
    assert np.abs(wrapped - truth).max() > 20  # many wraps
    estimate = laplacian_unwrap(wrapped, voxel_size_mm)
    # Finely sampled phase: the least-squares Laplacian solution is exact up to a constant.
    raw = estimate - truth
    np.testing.assert_allclose(raw - raw.mean(), 0.0, atol=1e-6)
    # So, with that constant removed, it wraps back onto the measured phase everywhere:
    # it differs from the measurement by whole turns only (2 pi k, k an integer field).
    turns = (estimate - raw.mean() - wrapped) / (2 * np.pi)
    np.testing.assert_allclose(turns, np.round(turns), atol=1e-6)
    assert np.abs(np.round(turns)).max() >= 3  # and the turns are really there


def test_laplacian_unwrap_of_unwrapped_input_is_identity_up_to_constant(rng):
    shape = (32, 32, 32)
    truth = _smooth_phase(shape, (1, 1, 1), amplitude_rad=2.0)  # no wraps (|p| < pi)
    assert np.abs(truth).max() < np.pi
    difference = laplacian_unwrap(truth, (1, 1, 1)) - truth
    np.testing.assert_allclose(difference, difference.mean(), atol=1e-9)


def test_residues_mark_a_phase_vortex_only():
    shape = (24, 24, 24)
    truth = _smooth_phase(shape, (1, 1, 1), amplitude_rad=10.0)
    assert not phase_residues(wrap_to_pi(truth)).any()  # finely sampled: consistent
    x, y, _ = np.indices(shape) - 11.5  # a vortex line along z between voxels 11 and 12
    residues = phase_residues(wrap_to_pi(truth + np.arctan2(y, x)))
    expected = np.zeros(shape, bool)
    expected[11:13, 11:13, :] = True
    np.testing.assert_array_equal(residues, expected)


def test_masked_unwrap_is_exact_up_to_a_harmonic_term(rng):
    """Random phase outside the mask changes the result inside only by a harmonic term."""
    shape = (40, 40, 40)
    truth = _smooth_phase(shape, (1, 1, 1), amplitude_rad=15.0)
    grid = np.indices(shape) - 19.5
    mask = (grid**2).sum(0) < 15**2
    noisy = np.where(mask, wrap_to_pi(truth), rng.uniform(-np.pi, np.pi, shape))
    error = laplacian_unwrap(noisy, (1, 1, 1), mask=mask) - truth
    interior = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & \
        np.roll(mask, -1, 1) & np.roll(mask, 1, 2) & np.roll(mask, -1, 2)
    lap = sum(np.roll(error, s, a) for a in range(3) for s in (1, -1)) - 6 * error
    assert np.abs(lap[interior]).max() < 1e-6


def _aliased_slab(shape=(32, 32, 32), step_rad=1.15 * np.pi, layer=20):
    """Smooth phase, plus a steep layer (next to bone) where the phase rises by > pi per voxel.

    The rise across the layer ``layer -> layer + 1`` along z is ``step_rad``: sampled too
    coarsely, it wraps to ``step_rad - 2 pi`` -- the wrong sign -- and, being the same
    everywhere in the layer, it makes no residue (the hard case of real data next to the
    skull base, reproduced in tests/algorithms/test_phase_pipeline.py).
    """
    truth = _smooth_phase(shape, (1, 1, 1), amplitude_rad=6.0)
    truth[:, :, layer + 1:] += step_rad
    return truth


def test_an_aliased_layer_makes_no_residue_but_is_near_pi():
    truth = _aliased_slab()
    wrapped = wrap_to_pi(truth)
    mask = np.ones(truth.shape, bool)
    assert not phase_residues(wrapped).any()
    near_pi = near_pi_differences(wrapped, mask)
    expected = np.zeros(truth.shape, bool)
    expected[:, :, 20:22] = True  # both voxels of every aliased pair
    steep_elsewhere = near_pi & ~expected
    np.testing.assert_array_equal(near_pi & expected, expected)
    # Elsewhere the smooth phase changes by < 0.8 pi per voxel: nothing flagged.
    assert not steep_elsewhere.any()
    # Unwrapped over the whole volume, the layer is a 2 pi error that reliable masking avoids.
    whole = laplacian_unwrap(wrapped, (1, 1, 1)) - truth
    assert np.abs(np.diff(whole, axis=2)).max() > np.pi


def test_reliable_mask_keeps_the_aliased_layer_out():
    truth = _aliased_slab()
    wrapped = wrap_to_pi(truth)
    mask = np.zeros(truth.shape, bool)
    mask[2:30, 2:30, 2:30] = True
    reliable, n_excluded = reliable_phase_mask(wrapped, mask)
    assert n_excluded == 2 * 28 * 28  # the two aliased voxel layers inside the mask
    assert not reliable[:, :, 20:22].any()
    # What is left is the larger side of the layer (z = 2-19, opened: its edges round off).
    assert not reliable[:, :, 22:].any()
    assert reliable.sum() > 0.9 * 28 * 28 * 18
    # Unwrapped inside it, the error is smooth (a harmonic term, as masked least squares
    # gives): no neighbour step near 2 pi. Measured largest step 0.22 rad.
    error = laplacian_unwrap(wrapped, (1, 1, 1), mask=reliable) - truth
    for axis in range(3):
        pairs = np.take(reliable, range(31), axis) & np.take(reliable, range(1, 32), axis)
        assert np.abs(np.diff(error, axis=axis))[pairs].max() < 0.5


def test_near_pi_ignores_pairs_that_leave_the_mask():
    wrapped = np.zeros((8, 8, 8))
    wrapped[:, :, 4:] = 0.95 * np.pi  # a near-pi step between z = 3 and 4
    mask = np.zeros(wrapped.shape, bool)
    mask[:, :, :4] = True  # the step is on the mask's edge: not an in-mask pair
    assert not near_pi_differences(wrapped, mask).any()
    mask[:, :, 4] = True
    assert near_pi_differences(wrapped, mask)[:, :, 3:5].all()
