"""Background removal: V-SHARP and LBV separate internal from external sources; the dipole-model
refinement recovers part of the field of sources at the surface."""

import numpy as np
import pytest

from qsmflow.algorithms.bgremove import (
    default_vsharp_radii_mm,
    lbv,
    refine_with_dipole_model,
    vsharp,
)
from qsmflow.algorithms.dipole import forward_field_ppm


def _ball(shape, voxel_size_mm, centre_mm, radius_mm):
    grids = np.meshgrid(*[np.arange(n) * h for n, h in zip(shape, voxel_size_mm, strict=False)],
                        indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre_mm, strict=False)) <= radius_mm**2


def _sphere_field_outside(shape, voxel_size_mm, centre_mm, radius_mm, dchi, b0):
    """Analytic field of a uniform sphere (ppm): exactly harmonic outside it."""
    grids = np.meshgrid(*[np.arange(n) * h for n, h in zip(shape, voxel_size_mm, strict=False)],
                        indexing="ij")
    d = [g - c for g, c in zip(grids, centre_mm, strict=False)]
    r = np.maximum(np.sqrt(sum(x**2 for x in d)), radius_mm)  # inside: unused, kept finite
    b = np.asarray(b0) / np.linalg.norm(b0)
    cos_t = sum(x * bi for x, bi in zip(d, b, strict=False)) / r
    return dchi / 3 * (radius_mm / r) ** 3 * (3 * cos_t**2 - 1)


@pytest.mark.parametrize("voxel_size_mm", [(1.0, 1.0, 1.0), (1.0, 1.2, 2.0)])
def test_vsharp_separates_internal_and_external_sources(voxel_size_mm):
    shape = tuple(int(round(e / h)) for e, h in zip((96, 96, 96), voxel_size_mm, strict=False))
    b0 = (0.2, 0.1, 0.97)
    mask = _ball(shape, voxel_size_mm, (48, 48, 44), 28)
    internal = 0.2 * _ball(shape, voxel_size_mm, (52, 44, 46), 6)
    local_truth = forward_field_ppm(internal, voxel_size_mm, b0)
    # An "air" sphere 8 mm outside the mask: its field is harmonic inside the mask.
    background = _sphere_field_outside(shape, voxel_size_mm, (48, 48, 87), 7.0, 9.4, b0)
    total = local_truth + background
    assert np.abs(background[mask]).max() > 5 * np.abs(local_truth[mask]).max()

    local, eroded = vsharp(total, mask, voxel_size_mm, radii_mm=np.arange(12, 1.9, -2.0))
    assert eroded.sum() > 0.8 * mask.sum()
    assert not (eroded & ~mask).any()
    error = local[eroded] - local_truth[eroded]
    nrmse = np.linalg.norm(error - error.mean()) / np.linalg.norm(local_truth[eroded])
    assert nrmse < 0.10  # measured 0.067 (1 mm) and 0.082 (anisotropic)


def test_vsharp_of_pure_harmonic_field_is_near_zero():
    shape, vsz = (64, 64, 64), (1.0, 1.0, 1.0)
    mask = _ball(shape, vsz, (32, 32, 32), 25)
    x, y, z = np.meshgrid(*[np.arange(n) - 32.0 for n in shape], indexing="ij")
    harmonic = 0.5 + 0.01 * x - 0.02 * z + 1e-3 * (x**2 - y**2) + 2e-4 * x * y * 3
    local, eroded = vsharp(harmonic, mask, vsz, radii_mm=[8, 6, 4])
    assert np.abs(local[eroded]).max() < 1e-2 * np.abs(harmonic[mask]).max()


def test_default_radii_follow_qsmjl():
    np.testing.assert_allclose(default_vsharp_radii_mm((1, 1, 1)), np.arange(18, 1.9, -2))
    radii = default_vsharp_radii_mm((0.5, 0.5, 2.0))
    assert radii[0] == pytest.approx(9.0) and radii[-1] >= 4.0 - 1e-9


def test_vsharp_rejects_non_positive_radii():
    with pytest.raises(ValueError, match="positive"):
        vsharp(np.zeros((8, 8, 8)), np.ones((8, 8, 8), bool), (1, 1, 1), radii_mm=[2, 0])


def test_vsharp_float32_matches_float64():
    shape, vsz = (40, 44, 36), (1.0, 1.1, 1.4)
    mask = _ball(shape, vsz, (20, 24, 25), 15)
    internal = 0.3 * _ball(shape, vsz, (22, 22, 24), 4)
    total = forward_field_ppm(internal, vsz, (0, 0.2, 0.98)) + _sphere_field_outside(
        shape, vsz, (20, 24, 47), 5.0, 9.4, (0, 0.2, 0.98))
    single, eroded_single = vsharp(total, mask, vsz, radii_mm=[8, 6, 4])
    double, eroded_double = vsharp(total, mask, vsz, radii_mm=[8, 6, 4], dtype=np.float64)
    np.testing.assert_array_equal(eroded_single, eroded_double)
    scale = np.abs(double[eroded_double]).max()
    assert np.abs(single - double).max() < 1e-5 * scale


def test_lbv_of_pure_harmonic_field_is_zero():
    """Harmonic polynomials up to degree 3 have a zero 7-point Laplacian: LBV returns 0."""
    shape, vsz = (48, 44, 40), (1.0, 1.2, 1.5)
    mask = _ball(shape, vsz, (24, 26, 30), 20)
    centre = (24, 26, 30)
    x, y, z = np.meshgrid(
        *[np.arange(n) * h - c for n, h, c in zip(shape, vsz, centre, strict=True)], indexing="ij")
    harmonic = 0.5 + 0.01 * x - 0.02 * z + 1e-3 * (x**2 - y**2) + 1e-4 * x * y * z \
        + 2e-5 * (x**3 - 3 * x * y**2)
    local, eroded = lbv(harmonic, mask, vsz)
    assert eroded.sum() > 0.8 * mask.sum() and not (eroded & ~mask).any()
    assert np.abs(local[eroded]).max() < 1e-5 * np.abs(harmonic[mask]).max()


@pytest.mark.parametrize("voxel_size_mm", [(1.0, 1.0, 1.0), (0.9, 1.1, 1.6)])
def test_lbv_recovers_a_deep_source_next_to_a_strong_background(voxel_size_mm):
    """LBV is accurate when the local field nearly vanishes on the mask surface."""
    shape = tuple(int(round(e / h)) for e, h in zip((96, 96, 96), voxel_size_mm, strict=False))
    b0 = (0.2, 0.1, 0.97)
    mask = _ball(shape, voxel_size_mm, (48, 48, 44), 30)
    internal = 0.2 * _ball(shape, voxel_size_mm, (50, 46, 44), 6)
    local_truth = forward_field_ppm(internal, voxel_size_mm, b0)
    background = _sphere_field_outside(shape, voxel_size_mm, (48, 48, 87), 7.0, 9.4, b0)
    local, eroded = lbv(local_truth + background, mask, voxel_size_mm)
    assert eroded.sum() > 0.85 * mask.sum()  # one voxel layer: 0.92 and 0.90
    error = local[eroded] - local_truth[eroded]
    nrmse = np.linalg.norm(error - error.mean()) / np.linalg.norm(local_truth[eroded])
    # Measured 0.063 (1 mm) and 0.071 (anisotropic): the source's field on the surface is
    # small but not zero, and LBV takes it as background.
    assert nrmse < 0.10


def test_lbv_matches_a_direct_sparse_solve(rng):
    """The multigrid-preconditioned CG solves the same Dirichlet problem as a sparse solver."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    shape, vsz = (26, 23, 19), (1.0, 0.8, 1.7)
    mask = _ball(shape, vsz, (13, 9, 16), 9.5) | _ball(shape, vsz, (9, 11, 13), 7)
    field = rng.normal(size=shape)
    local, eroded = lbv(field, mask, vsz, tol=1e-10)
    index = -np.ones(shape, int)
    index[eroded] = np.arange(eroded.sum())
    rows, cols, vals = [], [], []
    rhs = np.zeros(eroded.sum())
    points = np.argwhere(eroded)
    me = index[tuple(points.T)]
    for axis, h in enumerate(vsz):
        for step in (1, -1):
            nb = points.copy()
            nb[:, axis] += step
            j = index[tuple(nb.T)]
            inside = j >= 0
            rows += [me[inside], me]
            cols += [j[inside], me]
            vals += [np.full(inside.sum(), 1 / h**2), np.full(me.size, -1 / h**2)]
            rhs += (field[tuple(nb.T)] - field[tuple(points.T)]) / h**2
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                       np.concatenate(cols))))
    expected = spsolve(matrix, rhs)
    np.testing.assert_allclose(local[eroded], expected, atol=1e-7 * np.abs(expected).max())
    assert np.all(local[~eroded] == 0)


def test_lbv_peel_erodes_the_mask_by_a_ball():
    shape, vsz = (40, 40, 40), (1.0, 1.0, 2.0)
    mask = _ball(shape, vsz, (20, 20, 40), 16)
    _, eroded = lbv(np.zeros(shape), mask, vsz)
    _, peeled = lbv(np.zeros(shape), mask, vsz, peel_mm=4.0)
    assert peeled.sum() < eroded.sum() and not (peeled & ~eroded).any()
    with pytest.raises(ValueError, match="empty"):
        lbv(np.zeros(shape), mask, vsz, peel_mm=40.0)
    with pytest.raises(ValueError, match="same 3-D shape"):
        lbv(np.zeros((4, 4)), mask, vsz)


def _surface_source_chi():
    """chi (ppm, mean 0 in the mask) of a cortex-like cap and a nucleus, and the mask."""
    shape, vsz = (80, 80, 80), (1.5, 1.5, 1.5)
    mask = _ball(shape, vsz, (60, 60, 60), 45)
    # A cortex-like cap: a shell segment 3 mm thick just under the surface, plus a
    # deep nucleus. The cap's field reaches the interior as a harmonic field.
    shell = _ball(shape, vsz, (60, 60, 60), 44) & ~_ball(shape, vsz, (60, 60, 60), 41)
    cap = shell & (np.indices(shape)[2] * vsz[2] > 72)
    chi = 0.05 * cap + 0.1 * _ball(shape, vsz, (54, 66, 56), 7)
    return (chi - chi[mask].mean()) * mask, mask


def _surface_source_problem():
    """A ball mask with a source just inside its surface and an air sphere outside."""
    shape, vsz, b0 = (80, 80, 80), (1.5, 1.5, 1.5), (0.0, 0.26, 0.97)
    chi, mask = _surface_source_chi()
    local_truth = forward_field_ppm(chi, vsz, b0)
    background = _sphere_field_outside(shape, vsz, (60, 60, 118), 10.0, 9.4, b0)
    return local_truth + background, local_truth, mask, vsz, b0


def test_refinement_recovers_part_of_the_field_of_a_source_at_the_surface():
    """LBV assumes a zero local field on the surface; the cap's field is not zero there.

    Measured NRMSE on LBV's mask: plain 0.401, refined 0.357. (V-SHARP, radii 12-4 mm,
    does badly on this toy, 1.21, and the refinement of so poor a first pass makes it
    worse, 1.41: docs/benchmarks.md.)
    """
    field, truth, mask, vsz, b0 = _surface_source_problem()

    def remove(f, m):
        return lbv(f, m, vsz)

    plain, eroded = remove(field, mask)
    refined, eroded_refined = refine_with_dipole_model(remove, field, mask, vsz, b0)
    np.testing.assert_array_equal(eroded, eroded_refined)

    def nrmse(estimate):
        error = estimate[eroded] - truth[eroded]
        reference = truth[eroded] - truth[eroded].mean()
        return np.linalg.norm(error - error.mean()) / np.linalg.norm(reference)

    assert nrmse(refined) < nrmse(plain) - 0.03
    assert nrmse(refined) < 0.38


def test_refinement_with_the_true_chi_as_first_estimate_gives_the_local_field():
    """With an exact first estimate the model is the local field, and LBV only has to
    remove a background that is harmonic in the mask: the refinement then recovers the
    cap's field that plain LBV loses (measured NRMSE 0.054, against 0.401 plain and
    0.357 with the CFL2 estimate; what is left is the analytic air sphere's field, not
    quite harmonic on the grid, and the model's padding)."""
    field, truth, mask, vsz, b0 = _surface_source_problem()
    calls = []

    def oracle(local, region):
        calls.append(local.shape)
        chi, _ = _surface_source_chi()
        return chi

    def remove(f, m):
        return lbv(f, m, vsz)

    refined, eroded = refine_with_dipole_model(remove, field, mask, vsz, b0,
                                               first_estimate=oracle)
    assert calls == [field.shape]  # called once, on the full grid
    error = refined[eroded] - truth[eroded]
    reference = truth[eroded] - truth[eroded].mean()
    assert np.linalg.norm(error - error.mean()) / np.linalg.norm(reference) < 0.08


def test_refinement_of_a_pure_background_stays_near_zero():
    shape, vsz, b0 = (64, 64, 64), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)
    mask = _ball(shape, vsz, (32, 32, 32), 25)
    background = _sphere_field_outside(shape, vsz, (32, 32, 66), 6.0, 9.4, b0)
    plain, eroded = lbv(background, mask, vsz)
    local, _ = refine_with_dipole_model(lambda f, m: lbv(f, m, vsz), background, mask, vsz, b0)
    # Measured: largest |local| 0.0046 refined, 0.0041 plain (discretisation of a source
    # 3 mm from the mask), against a background of up to 1.86 ppm.
    assert np.abs(local[eroded]).max() < 1.25 * np.abs(plain[eroded]).max()
    assert np.abs(local[eroded]).max() < 3e-3 * np.abs(background[mask]).max()


def test_refinement_rejects_bad_arguments():
    field = np.zeros((8, 8, 8))
    mask = np.ones((8, 8, 8), bool)
    with pytest.raises(ValueError, match="regularisation"):
        refine_with_dipole_model(lambda f, m: (f, m), field, mask, (1, 1, 1), (0, 0, 1), lam=0)
    with pytest.raises(ValueError, match="no voxel"):
        refine_with_dipole_model(lambda f, m: (f, np.zeros_like(m)), field, mask, (1, 1, 1),
                                 (0, 0, 1))
    with pytest.raises(ValueError, match="same 3-D shape"):
        refine_with_dipole_model(lambda f, m: (f, m), field, mask[:4], (1, 1, 1), (0, 0, 1))
