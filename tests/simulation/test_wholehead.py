"""The whole-head phantom: its forward model against the analytic sphere, its k-space
reduction, its signal on a small synthetic head, and the subject split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qsmflow.simulation import wholehead as wh
from qsmflow.simulation import wholehead_anatomy as wa
from qsmflow.simulation.wholehead_kspace import (
    continuous_dipole_field_ppm,
    fraction_reduce,
    kspace_reduce,
    label_reduce,
)

HEADS = Path(__file__).resolve().parents[3] / "shared" / "data" / "heads"


def _sphere_fields(shape, voxel_mm, radius_mm, b0, factor):
    """A fine-grid ball (chi 1 ppm): its continuous-kernel field and the analytic field of
    the same-volume sphere, both on the fine grid, and the fine distances to the centre."""
    centre = (np.asarray(shape) - 1) / 2.0
    rel = (np.indices(shape, dtype=np.float64) - centre[:, None, None, None]) * voxel_mm
    r = np.sqrt((rel**2).sum(0))
    inside = r <= radius_mm
    field = continuous_dipole_field_ppm(inside.astype(np.float32), voxel_mm, b0, pad_vox=64)
    a = (3 * inside.sum() * voxel_mm**3 / (4 * np.pi)) ** (1 / 3)  # same-volume radius
    b = np.asarray(b0) / np.linalg.norm(b0)
    cos = np.tensordot(b, rel, axes=1) / np.maximum(r, 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        analytic = np.where(r > a, (a / np.maximum(r, 1e-9)) ** 3 * (3 * cos**2 - 1) / 3.0, 0.0)
    return field, analytic, r, a


@pytest.mark.parametrize("b0", [(0.0, 0.0, 1.0), (0.3, -0.2, 0.93)])
def test_reduced_sphere_field_matches_the_reduced_analytic_field(b0):
    """The phantom's forward model and reduction against the uniform sphere (chi 1 ppm,
    field 2/3 ppm at the poles): the field of a 0.5 mm ball reduced to 1 mm equals the
    analytic field reduced the same way, beyond 1 mm from the surface, to 0.005 ppm RMS
    and 0.03 ppm at worst (the staircase of the ball), and to 0.006 ppm beyond 5 mm; there
    it also equals the analytic field itself to 0.02 ppm (the crop's ringing)."""
    field, analytic, r, a = _sphere_fields((96, 96, 96), 0.5, 8.0, b0, 2)
    reduced, reduced_analytic = kspace_reduce(field, 2), kspace_reduce(analytic, 2)
    r = r[::2, ::2, ::2]  # output voxel j sits on fine voxel 2j
    away = ((r > a + 1.0) | (r < a - 1.0)) & (r < 22.0)
    error = np.abs(reduced - reduced_analytic)
    assert np.sqrt(np.mean(error[away] ** 2)) < 0.005
    assert error[away].max() < 0.03
    far = (r > a + 5.0) & (r < 22.0)
    assert error[far].max() < 0.006
    assert np.abs(reduced[far] - analytic[::2, ::2, ::2][far]).max() < 0.02
    assert np.abs(reduced_analytic[away]).max() > 0.3  # the comparison covers the strong field


def test_kspace_reduction_keeps_band_limited_signals_and_the_mean(rng):
    n, factor = (40, 36, 32), 2
    x = np.arange(n[0])[:, None, None]
    smooth = (2.0 + np.cos(2 * np.pi * 3 * x / n[0]) * np.ones(n)).astype(np.float32)
    reduced = kspace_reduce(smooth, factor)
    assert reduced.shape == (20, 18, 16)
    np.testing.assert_allclose(reduced, smooth[::2, ::2, ::2], atol=1e-5)
    noisy = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    out = kspace_reduce(noisy, factor)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out.mean(), noisy.mean(), atol=1e-6)


def test_fraction_and_label_reduction():
    """Output voxel j covers fine voxels 2j-1 (half), 2j, 2j+1 (half)."""
    labels = np.zeros((16, 16, 16), np.int16)
    labels[2:10] = 3
    frac = fraction_reduce(labels == 3, 2)
    np.testing.assert_allclose(frac[:, 4, 4], [0, 0.75, 1, 1, 1, 0.25, 0, 0])
    out = label_reduce(labels, 2)
    assert (out[1:5] == 3).all() and (out[0] == 0).all() and (out[5:] == 0).all()


def test_subject_split_is_disjoint_and_covers_the_twenty_heads():
    splits = [set(wh.TUNING_SUBJECTS), set(wh.TEST_SUBJECTS), set(wh.TRAINING_SUBJECTS)]
    assert sum(len(s) for s in splits) == len(set().union(*splits)) == 20
    if (HEADS / "brainweb").is_dir():
        on_disk = {p.name[7:9] for p in (HEADS / "brainweb").glob("subject*_crisp.nii.gz")}
        assert on_disk == set().union(*splits)


def _ball_head(n=48):
    """A synthetic brain of nested balls in CSF: GM, WM, a pallidum (no air, so that the
    field is weak and the magnitude shows the relaxation alone)."""
    c = (n - 1) / 2.0
    r = np.sqrt(((np.indices((n, n, n)) - c) ** 2).sum(0)) * wa.FINE_VOXEL_MM
    tissue = np.full((n, n, n), wa.CSF, np.uint8)
    for radius, label in ((8.0, wa.GM), (6.0, wa.WM)):
        tissue[r <= radius] = label
    deepgm = np.zeros(tissue.shape, np.int16)
    deepgm[(r <= 2.0)] = 5  # globus_pallidus_left
    tissue[deepgm > 0] = wa.GM
    affine = np.diag([wa.FINE_VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = -c * wa.FINE_VOXEL_MM + np.asarray(wh.ROTATION_CENTRE_MNI_MM)
    return wa.WholeHeadAnatomy("synthetic", affine, tissue, deepgm, r <= 8.0, {})


@pytest.mark.parametrize("b0_t", [3.0, 7.0])
def test_simulated_echoes_follow_the_tissue_relaxation(b0_t):
    anatomy = _ball_head()
    scan = wh.simulate(anatomy, b0_t=b0_t, voxel_size_mm=1.0,
                       pose_deg=wh.POSES_DEG["oblique"], snr=1e6, seed=3, workers=1)
    assert scan.magnitude.shape == scan.phase_rad.shape == (24, 24, 24, 5)
    assert (scan.chi_ppm.shape == scan.local_field_hz.shape == scan.total_field_hz.shape
            == scan.brain_mask.shape == (24, 24, 24))
    assert np.abs(scan.phase_rad).max() <= np.pi
    # The oblique pose tilts B0 in voxel coordinates by the pose's rotation.
    cos = np.dot(scan.metadata["b0_direction_voxel"], (0.0, 0.0, 1.0))
    expected = wh.rotation_matrix(wh.POSES_DEG["oblique"])[2, 2]
    np.testing.assert_allclose(cos, expected, atol=1e-9)
    # White-matter decay between echoes: exp(-dTE R2*) with this subject's R2* scale.
    subject = wh.draw_subject(np.random.default_rng(3), b0_t)
    r2s = wh._TISSUES[wa.WM][5][0 if b0_t == 3.0 else 1] * subject["r2star_scale"]
    r = np.sqrt(((np.indices((24, 24, 24)) * 2 - 23.5) ** 2).sum(0)) * wa.FINE_VOXEL_MM
    wm = scan.magnitude[(r > 3.5) & (r < 4.5)]
    dte = scan.te_s[1] - scan.te_s[0]
    np.testing.assert_allclose(np.median(wm[:, 1] / wm[:, 0]), np.exp(-dte * r2s), rtol=0.01)
    # The nucleus keeps its drawn susceptibility in the truth (its centre voxel).
    value = subject["nucleus_chi_ppm"]["globus_pallidus"]["left"]
    assert abs(scan.chi_ppm[12, 12, 12] - value) < 0.3 * value
