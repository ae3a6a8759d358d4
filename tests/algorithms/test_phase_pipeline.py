"""Phase processing end to end: echo fit, unwrapping, background removal, on simulated heads.

Two heads: the analytic head of ``analytic_head.py`` (fast, exactly harmonic background)
and the MNI phantom of ``qsmflow.simulation`` (realistic anatomy, ~10 s to build: marked
slow). On the MNI phantom, from a known susceptibility through field, wraps, a phase
offset and noise to the local field, measured against the field of
``(chi - mean(chi[brain])) * brain`` inside the output mask (after removing the mean of
the error: the constant is never recoverable). Coverage is the output mask's share of
the brain mask. The steps are those of ``qsmflow.interfaces.gre``.

The protocol follows the ISMRM consensus on clinical QSM (Magn Reson Med 2024;91:1834):
3T, monopolar multi-echo GRE with the last echo near the T2* of tissue, here 5 echoes at
4-28 ms; 2 mm voxels keep the test fast; SNR 80 (first echo, brain mean). Two heads are
simulated: the test head (seed 2025, the grid along the scanner axes, head tilted by
5 degrees) and a second head (seed 7, an oblique grid and another pose), on which the
refinement's regularisation was chosen (``bgremove.REFINE_CFL2_LAMBDA``).

Measured (docs/benchmarks.md, "Phase processing", has the tables against coverage):

==================  ===================  ===================
                    test head            second head
==================  ===================  ===================
V-SHARP             0.437 at 81.4 %      0.481 at 81.5 %
V-SHARP + refine    0.302 at 81.4 %      0.347 at 81.5 %
LBV                 0.385 at 90.1 %      0.419 at 90.1 %
LBV + refine        0.268 at 90.1 %      0.355 at 90.1 %
==================  ===================  ===================

Issue 3's target (<= 0.30 at >= 85 % of the brain) is met by LBV + refinement on the
test head and missed by 0.055 on the second head: there LBV's prior alone costs 0.300 (the
true local field as input) and the phase noise of SNR 80 adds 0.15 in quadrature.
"""

import numpy as np
import pytest

from qsmflow.algorithms.bgremove import lbv, refine_with_dipole_model, vsharp
from qsmflow.algorithms.dipole import b0_direction_from_affine, forward_field_ppm
from qsmflow.algorithms.echo_combination import fit_echo_phase, wrap_to_pi
from qsmflow.algorithms.unwrap import laplacian_unwrap, reliable_phase_mask
from qsmflow.constants import hz_per_ppm

from .analytic_head import make_head, nrmse_local_field

ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028)
B0_T = 3.0
GRID_SHAPE = (88, 104, 88)
VOXEL_SIZE_MM = 2.0
# (seed, grid rotation in degrees, head rotation in degrees, head shift in mm)
TEST_HEAD = (2025, (0.0, 0.0, 0.0), (4.0, 0.0, -3.0), (2.0, -3.0, 4.0))
SECOND_HEAD = (7, (5.0, -4.0, 0.0), (-3.0, 5.0, 2.0), (-2.0, 3.0, -1.0))


_nrmse = nrmse_local_field


def _run_chain(magnitude, phase_rad, te_s, brain, voxel_size):
    """The steps of qsmflow.interfaces.gre: fit, reliable mask, unwrap, to ppm."""
    fit = fit_echo_phase(magnitude, phase_rad, te_s, brain)
    reliable, _ = reliable_phase_mask(fit.wrapped_phase_rad, brain)
    unwrapped = laplacian_unwrap(fit.wrapped_phase_rad, voxel_size, mask=reliable)
    scale_rad_per_ppm = 2 * np.pi * hz_per_ppm(B0_T) * fit.reference_dte_s
    field_ppm = unwrapped / scale_rad_per_ppm
    field_ppm = (field_ppm - np.median(field_ppm[reliable])) * brain
    return fit, reliable, unwrapped, field_ppm, scale_rad_per_ppm


def _max_jump(error, region):
    """Largest neighbour difference of ``error`` between two voxels of ``region``."""
    jumps = []
    for axis in range(3):
        n = region.shape[axis]
        pairs = np.take(region, range(n - 1), axis) & np.take(region, range(1, n), axis)
        jumps.append(np.abs(np.diff(error, axis=axis))[pairs].max())
    return max(jumps)


def test_chain_on_the_analytic_head(rng):
    """4 echoes (4-22 ms, 3T), a smooth offset of 2-4 rad, noise with SNR 100, dark veins."""
    head = make_head()
    te_s = np.array([0.004, 0.010, 0.016, 0.022])
    grid = np.indices(head.brain.shape) / np.array(head.brain.shape).reshape(3, 1, 1, 1)
    offset_rad = 2.5 + 1.5 * grid[0] - 2.0 * grid[1] * grid[2]
    true_phase_per_s = 2 * np.pi * hz_per_ppm(B0_T) * head.total_field_ppm
    echoes = [head.magnitude * np.exp(-20.0 * te) * np.exp(1j * (offset_rad + true_phase_per_s
                                                                  * te)) for te in te_s]
    signal = np.stack(echoes, -1)
    signal += 0.01 * (rng.normal(size=signal.shape) + 1j * rng.normal(size=signal.shape))
    fit, reliable, unwrapped, field_ppm, scale = _run_chain(
        np.abs(signal), np.angle(signal), te_s, head.brain, head.voxel_size_mm)
    assert reliable.sum() > 0.99 * head.brain.sum()
    # No 2 pi residuals: the unwrapped phase differs from the truth smoothly (measured
    # largest neighbour jump 1.7 rad, next to veins where noise makes residues).
    assert _max_jump(unwrapped - scale * head.total_field_ppm, reliable) < np.pi

    vsz, b0 = head.voxel_size_mm, head.b0_direction
    results = {}
    for name, remove in [("vsharp", lambda f, m: vsharp(f, m, vsz)),
                         ("lbv", lambda f, m: lbv(f, m, vsz))]:
        plain, eroded = remove(field_ppm, reliable)
        refined, _ = refine_with_dipole_model(remove, field_ppm, reliable, vsz, b0)
        results[name] = (eroded.sum() / head.brain.sum(),
                         _nrmse(plain, head.local_field_ppm, eroded),
                         _nrmse(refined, head.local_field_ppm, eroded))
    # Measured (coverage, plain, refined): V-SHARP 83.3 %, 0.669, 0.695; LBV 91.6 %, 0.554,
    # 0.464. This head's cortex is a smooth unfolded shell whose surface field neither
    # plain method can tell from a background. The refinement helps LBV; on V-SHARP's
    # smaller mask the first susceptibility estimate misses that shell and it does not.
    coverage_v, plain_v, refined_v = results["vsharp"]
    coverage_l, plain_l, refined_l = results["lbv"]
    assert coverage_v > 0.82 and plain_v < 0.72
    assert coverage_l > 0.90 and plain_l < 0.60
    assert plain_l < plain_v - 0.05
    assert refined_l < plain_l - 0.06
    assert abs(refined_v - plain_v) < 0.05


def _simulate(head):
    pytest.importorskip("nilearn")
    from qsmflow.simulation.phantom import acquire, acquisition_affine, build_head_model, rigid_pose

    seed, grid_rotation, head_rotation, head_shift = head
    rng = np.random.default_rng(seed)
    model = build_head_model(rng, n_veins=25)
    affine = acquisition_affine(grid_rotation, GRID_SHAPE, VOXEL_SIZE_MM)
    acq = acquire(model, affine, GRID_SHAPE, te_s=ECHO_TIMES_S, b0_t=B0_T,
                  head_pose=rigid_pose(head_rotation, head_shift), snr=80.0,
                  phase_offset_rad=1.2, rng=rng)
    voxel_size = np.full(3, VOXEL_SIZE_MM)
    brain = acq.brain_mask
    fit, reliable, unwrapped, field_ppm, scale_rad_per_ppm = _run_chain(
        acq.magnitude, acq.phase_rad, acq.te_s, brain, voxel_size)
    b0 = b0_direction_from_affine(affine)
    chi = acq.chi_ppm.astype(np.float64)
    truth = forward_field_ppm((chi - chi[brain].mean()) * brain, voxel_size, b0)
    return dict(acq=acq, fit=fit, reliable=reliable, unwrapped=unwrapped, field_ppm=field_ppm,
                truth=truth, voxel_size=voxel_size, scale=scale_rad_per_ppm, brain=brain,
                b0=b0)


@pytest.fixture(scope="module")
def test_head():
    """The test head, its acquisition and the processing chain, once for this module."""
    return _simulate(TEST_HEAD)


@pytest.fixture(scope="module")
def second_head():
    return _simulate(SECOND_HEAD)


def _local_fields(run, method, refine):
    vsz = run["voxel_size"]

    def remove(field, mask):
        return (lbv(field, mask, vsz) if method == "lbv" else vsharp(field, mask, vsz))

    if refine:
        local, eroded = refine_with_dipole_model(remove, run["field_ppm"], run["reliable"],
                                                 vsz, run["b0"])
    else:
        local, eroded = remove(run["field_ppm"], run["reliable"])
    return eroded.sum() / run["brain"].sum(), _nrmse(local, run["truth"], eroded)


@pytest.mark.slow
def test_unwrapped_field_has_no_2pi_residuals(test_head, second_head):
    """The unwrapped phase differs from the true phase by a smooth field, never by 2 pi jumps.

    Next to the skull base the true phase changes by up to pi per voxel over the 6 ms echo
    spacing; those voxels leave the reliable mask (near-pi differences). Measured largest
    neighbour jump of the error: 1.88 rad (test head), 2.04 rad (second head).
    """
    for run in (test_head, second_head):
        true_phase = run["scale"] * run["acq"].total_field_ppm
        reliable = run["reliable"]
        assert reliable.sum() > 0.95 * run["brain"].sum()
        assert _max_jump(run["unwrapped"] - true_phase, reliable) < 0.8 * np.pi
        # The fit removed the phase offset: the wrapped phase is that of the field alone.
        offset_free = wrap_to_pi(run["fit"].wrapped_phase_rad - true_phase)[reliable]
        assert np.abs(np.angle(np.mean(np.exp(1j * offset_free)))) < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vsharp", "lbv"])
def test_refinement_lowers_the_local_field_error(test_head, second_head, method):
    """On both heads and for both methods, on the same output mask (table above)."""
    for run in (test_head, second_head):
        coverage, plain = _local_fields(run, method, refine=False)
        _, refined = _local_fields(run, method, refine=True)
        assert coverage > (0.80 if method == "vsharp" else 0.89)
        assert plain < 0.50
        assert refined < plain - 0.05


@pytest.mark.slow
def test_issue3_local_field_target(test_head):
    """<= 0.30 at >= 85 % of the brain mask: LBV with refinement (measured 0.268 at 90.1 %)."""
    coverage, nrmse = _local_fields(test_head, "lbv", refine=True)
    assert coverage >= 0.85
    assert nrmse <= 0.30


@pytest.mark.slow
def test_second_head_misses_the_target_by_a_known_margin(second_head):
    """Not every head reaches 0.30: this one gives 0.355 at 90.1 % with LBV + refinement.

    The test pins the number so that a change that moves it shows up here.
    """
    coverage, nrmse = _local_fields(second_head, "lbv", refine=True)
    assert coverage >= 0.85
    assert nrmse < 0.38


@pytest.mark.slow
def test_second_head_error_is_the_prior_and_the_phase_noise(second_head):
    """Why the second head misses: LBV's harmonic prior near the surface, plus phase noise.

    Measured: with the true local field as input (no background, no noise) LBV gives 0.364
    and LBV + refinement 0.300; the phase noise alone (the noisy minus the noise-free
    result on the same mask) is 0.151 of the true local field (docs/benchmarks.md).
    """
    run = second_head
    vsz, brain, truth = run["voxel_size"], run["brain"], run["truth"]

    def remove(field, mask):
        return lbv(field, mask, vsz)

    plain, eroded = remove(truth * brain, brain)
    refined, _ = refine_with_dipole_model(remove, truth * brain, brain, vsz, run["b0"])
    prior_plain, prior_refined = _nrmse(plain, truth, eroded), _nrmse(refined, truth, eroded)
    assert 0.27 < prior_refined < 0.33
    assert prior_refined < prior_plain - 0.04

    reliable = run["reliable"]
    noisy, eroded = refine_with_dipole_model(remove, run["field_ppm"], reliable, vsz, run["b0"])
    clean, _ = refine_with_dipole_model(remove, run["acq"].total_field_ppm * reliable,
                                        reliable, vsz, run["b0"])
    difference = (noisy - clean)[eroded]
    noise_share = np.linalg.norm(difference - difference.mean()) / np.linalg.norm(
        truth[eroded] - truth[eroded].mean())
    assert 0.12 < noise_share < 0.18
