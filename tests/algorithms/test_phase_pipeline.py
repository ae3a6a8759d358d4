"""Phase processing end to end: echo fit, unwrapping, background removal, on simulated heads.

Two heads: the analytic head of ``analytic_head.py`` (fast, exactly harmonic background)
and the MNI phantom of ``qsmflow.simulation`` (realistic anatomy, ~15 s to build: marked
slow). On the MNI phantom, from a known susceptibility through field, wraps, a phase
offset and noise (2 mm, 3T, echoes 4/11/18 ms, SNR 80) to the local field, measured
against the field of ``(chi - mean(chi[brain])) * brain`` inside the output mask (after
removing the mean of the error: the constant is never recoverable). Coverage is the
output mask's share of the brain mask. The steps are those of ``qsmflow.interfaces.gre``
(residue voxels leave the mask handed to background removal).

Measured here (this phantom, this noise; docs/benchmarks.md, "Phase processing", has the
table against coverage): V-SHARP (default radii 36-4 mm) 0.48 at 81% coverage, LBV 0.47
at 90%. The noise alone costs about 0.2 (white field noise of ~0.2 Hz against a local
field of ~1 Hz rms) and the unrecoverable field of the susceptibility step at the mask
surface most of the rest, so issue 3's target of 0.30 at 85% is not reached; that test is
an expected failure that says so.
"""

import numpy as np
import pytest
from scipy import ndimage

from qsmflow.algorithms.bgremove import lbv, vsharp
from qsmflow.algorithms.dipole import b0_direction_from_affine, forward_field_ppm
from qsmflow.algorithms.echo_combination import fit_echo_phase, wrap_to_pi
from qsmflow.algorithms.masking import largest_component
from qsmflow.algorithms.unwrap import laplacian_unwrap, phase_residues
from qsmflow.constants import hz_per_ppm

from .analytic_head import make_head, nrmse_local_field

ECHO_TIMES_S = (0.004, 0.011, 0.018)
B0_T = 3.0
GRID_SHAPE = (88, 104, 88)
VOXEL_SIZE_MM = 2.0


_nrmse = nrmse_local_field


def _run_chain(magnitude, phase_rad, te_s, brain, voxel_size):
    """The steps of qsmflow.interfaces.gre: fit, residues out of the mask, unwrap, to ppm."""
    fit = fit_echo_phase(magnitude, phase_rad, te_s, brain)
    residues = phase_residues(fit.wrapped_phase_rad) & brain
    reliable = largest_component(ndimage.binary_opening(brain & ~residues))
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

    local_v, eroded_v = vsharp(field_ppm, reliable, head.voxel_size_mm)
    local_l, eroded_l = lbv(field_ppm, reliable, head.voxel_size_mm)
    coverage_v = eroded_v.sum() / head.brain.sum()
    coverage_l = eroded_l.sum() / head.brain.sum()
    nrmse_v = _nrmse(local_v, head.local_field_ppm, eroded_v)
    nrmse_l = _nrmse(local_l, head.local_field_ppm, eroded_l)
    # Measured: V-SHARP 0.67 at 83%, LBV 0.55 at 92% (from the true total field: 0.65 and
    # 0.50). This head's cortex is a smooth unfolded shell, whose surface field neither
    # method can tell from a background; LBV assumes a zero local field on the surface,
    # which the CSF rim of the mask makes nearly true.
    assert coverage_v > 0.82 and nrmse_v < 0.72
    assert coverage_l > 0.90 and nrmse_l < 0.60
    assert nrmse_l < nrmse_v - 0.05


@pytest.fixture(scope="module")
def phantom_run():
    """The phantom, its acquisition and the processing chain, once for this module (~10 s)."""
    pytest.importorskip("nilearn")
    from qsmflow.simulation.bids_example import acquisition_affine
    from qsmflow.simulation.phantom import acquire, build_head_model, rigid_pose

    rng = np.random.default_rng(2025)
    model = build_head_model(rng, n_veins=25)
    affine = acquisition_affine((0.0, 0.0, 0.0), GRID_SHAPE, VOXEL_SIZE_MM)
    acq = acquire(model, affine, GRID_SHAPE, te_s=ECHO_TIMES_S, b0_t=B0_T,
                  head_pose=rigid_pose((4.0, 0.0, -3.0), (2.0, -3.0, 4.0)), snr=80.0,
                  phase_offset_rad=1.2, rng=rng)
    voxel_size = np.full(3, VOXEL_SIZE_MM)
    brain = acq.brain_mask
    fit, reliable, unwrapped, field_ppm, scale_rad_per_ppm = _run_chain(
        acq.magnitude, acq.phase_rad, acq.te_s, brain, voxel_size)
    chi = acq.chi_ppm.astype(np.float64)
    truth = forward_field_ppm((chi - chi[brain].mean()) * brain, voxel_size,
                              b0_direction_from_affine(affine))
    return dict(acq=acq, fit=fit, reliable=reliable, unwrapped=unwrapped, field_ppm=field_ppm,
                truth=truth, voxel_size=voxel_size, scale=scale_rad_per_ppm, brain=brain)


@pytest.mark.slow
def test_unwrapped_field_has_no_2pi_residuals(phantom_run):
    """The unwrapped phase differs from the true phase by a smooth field, never by 2 pi jumps.

    Next to the sinuses the true phase changes by up to 3.1 rad per voxel over the 7 ms
    echo spacing: the measured largest neighbour jump of the error is 2.4 rad (15 of
    660,000 pairs above pi/2), a least-squares smear, not a wrap.
    """
    run = phantom_run
    true_phase = run["scale"] * run["acq"].total_field_ppm
    reliable = run["reliable"]
    assert reliable.sum() > 0.95 * run["brain"].sum()
    assert _max_jump(run["unwrapped"] - true_phase, reliable) < np.pi
    # The fit removed the phase offset: the wrapped phase is that of the field alone.
    offset_free = wrap_to_pi(run["fit"].wrapped_phase_rad - true_phase)[reliable]
    assert np.abs(np.angle(np.mean(np.exp(1j * offset_free)))) < 0.1


@pytest.mark.slow
def test_vsharp_local_field_accuracy(phantom_run):
    run = phantom_run
    local, eroded = vsharp(run["field_ppm"], run["reliable"], run["voxel_size"])
    coverage = eroded.sum() / run["brain"].sum()
    nrmse = _nrmse(local, run["truth"], eroded)
    assert coverage > 0.79 and nrmse < 0.52  # measured 0.811 and 0.484


@pytest.mark.slow
def test_lbv_keeps_more_brain_at_lower_error_than_vsharp(phantom_run):
    run = phantom_run
    local_v, eroded_v = vsharp(run["field_ppm"], run["reliable"], run["voxel_size"])
    local_l, eroded_l = lbv(run["field_ppm"], run["reliable"], run["voxel_size"])
    coverage = eroded_l.sum() / run["brain"].sum()
    nrmse = _nrmse(local_l, run["truth"], eroded_l)
    assert coverage > 0.88 and nrmse < 0.50  # measured 0.897 and 0.469
    # On V-SHARP's own (smaller) mask, LBV is more accurate too.
    common = eroded_v & eroded_l
    assert _nrmse(local_l, run["truth"], common) < _nrmse(local_v, run["truth"], common) - 0.02


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 3 target (NRMSE <= 0.30 at >= 85% of the brain) "
                   "is not reached on this phantom with SNR 80: see the module docstring")
def test_issue3_local_field_target(phantom_run):
    run = phantom_run
    local, eroded = lbv(run["field_ppm"], run["reliable"], run["voxel_size"])
    assert eroded.sum() >= 0.85 * run["brain"].sum()
    assert _nrmse(local, run["truth"], eroded) <= 0.30
