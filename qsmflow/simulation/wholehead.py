"""A realistic whole-head QSM phantom, independent of the generator NSIDL was trained on.

Anatomy: the BrainWeb heads with registered Colin27 cavities and atlas nuclei
(:mod:`qsmflow.simulation.wholehead_anatomy`). Physics, all on the 0.5 mm fine grid:

* susceptibility relative to water/CSF per tissue, drawn per subject around literature
  values (deep gray nuclei with an age-like iron trend), plus a smooth within-tissue texture;
* the field from the *continuous* dipole kernel ``D = 1/3 - (k.b)^2/k^2`` sampled on the
  padded fine grid's DFT frequencies (the head in air, the neck continued below the field of
  view), with the B0 direction of the pose (a real rotation of the head relative to B0, and
  an oblique output affine that follows the head);
* a shim: the field's 0th-2nd order spherical-harmonic fit over the brain is removed and a
  random residual of orders 1-3 added;
* the complex multi-echo spoiled GRE signal per fine voxel (M0, T1, R2*, fat with its
  chemical shift, a smooth transmit/receive phase offset), reduced to the output grid by
  cropping k-space (a Tukey taper on the outer 10% of the band); complex Gaussian noise is
  added at a stated SNR on the output grid.

The truth is reduced the same way: chi of the brain (chi * true brain) and the local field
(the field of the brain's sources only) by the same k-space crop; masks and labels by the
volume fraction of each output voxel (> 0.5, or the largest label). The true total field is
that local field plus the background field at the output voxel centres.

Subjects are split once, here, for every script: :data:`TUNING_SUBJECTS` may be used to
choose settings; :data:`TEST_SUBJECTS` are only for reporting; :data:`TRAINING_SUBJECTS`
are for network training.

References
----------
Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation of
field inhomogeneity due to spatial variation of magnetic susceptibility. Concepts Magn
Reson B 2005;25B:65-78 (continuous kernel).
Marques JP, Meineke J, Milovic C, et al. QSM reconstruction challenge 2.0: a realistic in
silico head phantom for MRI data simulation and evaluation. Magn Reson Med 2021;86:526-542
(fine-grid simulation, k-space reduction, tissue values).
Li W, Wu B, Batrachenko A, et al. Differential developmental trajectories of magnetic
susceptibility in human brain gray and white matter over the lifespan. Hum Brain Mapp
2014;35:2698-2713 (age trend of nuclei).
Peters AM, Brookes MJ, Hoogenraad FG, et al. T2* measurements in human brain at 1.5, 3 and
7 T. Magn Reson Imaging 2007;25:1451-1457.
Rooney WD, Johnson G, Li X, et al. Magnetic field and tissue dependencies of human brain
longitudinal 1H2O relaxation in vivo. Magn Reson Med 2007;57:308-318.
Schenck JF. The role of magnetic susceptibility in magnetic resonance imaging. Med Phys
1996;23:815-850 (air, fat and bone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from qsmflow.constants import AIR_MINUS_TISSUE_CHI_PPM, GYROMAGNETIC_RATIO_HZ_PER_T, PPM

from . import wholehead_anatomy as wa
from .wholehead_kspace import (
    continuous_dipole_field_ppm,
    fraction_reduce,
    harmonic_sum,
    kspace_reduce,
    label_reduce,
    solid_harmonics,
)

TUNING_SUBJECTS = ("04", "05", "06")
TEST_SUBJECTS = ("18", "20", "38")
TRAINING_SUBJECTS = ("41", "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52",
                     "53", "54")

POSES_DEG = {"straight": (0.0, 0.0, 0.0), "oblique": (18.0, -10.0, 6.0)}  # about x, y, z
ROTATION_CENTRE_MNI_MM = (0.0, -18.0, 10.0)
ECHO_TIMES_S = {3.0: (0.005, 0.010, 0.015, 0.020, 0.025),
                7.0: (0.004, 0.008, 0.012, 0.016, 0.020)}
REPETITION_TIME_S = {3.0: 0.035, 7.0: 0.030}
FLIP_ANGLE_DEG = {3.0: 15.0, 7.0: 12.0}
FAT_SHIFT_PPM = -3.4  # main methylene peak relative to water
NECK_EXTENSION_MM = 80.0  # the neck continues below the model for the field computation
FIELD_PAD_MM = 8.0  # air around the head for the field's FFT
SHIM_RESIDUAL_PPM = 0.08  # sd of each residual harmonic at 100 mm (orders 1-3)
PHASE_OFFSET_RAD = 1.0  # sd of the smooth part of the transmit/receive phase at 100 mm
TEXTURE_FACTOR = 4  # textures are drawn on a 2 mm grid and interpolated

# Per tissue: chi (ppm, relative to water), between-subject sd, texture sd (ppm),
# M0, T1 (s) and R2* (1/s) at 3T and 7T, fat fraction. Index = label of wholehead_anatomy.
_TISSUES = {
    wa.AIR: (AIR_MINUS_TISSUE_CHI_PPM, 0.0, 0.0, 0.0, (1.0, 1.0), (0.0, 0.0), 0.0),
    wa.CSF: (0.0, 0.0, 0.0, 1.00, (4.2, 4.4), (4.0, 6.0), 0.0),
    wa.GM: (0.030, 0.008, 0.008, 0.82, (1.35, 1.92), (16.0, 30.0), 0.0),
    wa.WM: (-0.030, 0.006, 0.006, 0.70, (0.85, 1.22), (20.0, 36.0), 0.0),
    wa.FAT: (0.60, 0.05, 0.03, 0.90, (0.38, 0.58), (35.0, 60.0), 1.0),
    wa.MUSCLE: (0.0, 0.02, 0.02, 0.75, (1.42, 1.90), (35.0, 70.0), 0.0),
    wa.SKIN: (0.0, 0.02, 0.02, 0.70, (1.20, 1.60), (40.0, 75.0), 0.0),
    wa.SKULL: (-2.2, 0.15, 0.10, 0.05, (0.25, 0.30), (900.0, 1500.0), 0.0),
    wa.VESSELS: (0.40, 0.04, 0.03, 0.85, (1.65, 2.10), (45.0, 110.0), 0.0),
    wa.CONNECTIVE: (0.20, 0.05, 0.03, 0.65, (0.90, 1.20), (45.0, 80.0), 0.3),
    wa.DURA: (0.0, 0.02, 0.01, 0.50, (1.00, 1.30), (50.0, 90.0), 0.0),
    wa.MARROW: (0.20, 0.10, 0.05, 0.80, (0.45, 0.60), (90.0, 180.0), 0.7),
    wa.CAVITY: (AIR_MINUS_TISSUE_CHI_PPM, 0.0, 0.0, 0.0, (1.0, 1.0), (0.0, 0.0), 0.0),
}
# Deep gray nuclei (roi of qsmflow/data/deepgm_labels.tsv): chi at age 20 and its rise
# to age 80 (ppm), after the lifespan trends of Li 2014 and the 3T values of QSM work.
NUCLEUS_CHI_PPM = {"caudate": (0.045, 0.025), "putamen": (0.020, 0.065),
                   "globus_pallidus": (0.140, 0.045), "thalamus": (0.005, 0.012),
                   "substantia_nigra": (0.100, 0.045), "red_nucleus": (0.070, 0.055),
                   "dentate_nucleus": (0.070, 0.060)}
NUCLEUS_R2STAR_PER_PPM_3T = 190.0  # R2* rises with iron: about 190 1/s per ppm at 3T
AGE_RANGE_Y = (20.0, 80.0)


@dataclass(frozen=True)
class WholeHeadScan:
    """One simulated acquisition on the output grid (axes x, y, z; echoes last)."""

    affine: np.ndarray  # output voxel -> scanner mm (B0 along +z)
    magnitude: np.ndarray  # float32 (x, y, z, echo), arbitrary units
    phase_rad: np.ndarray  # float32 in [-pi, pi)
    te_s: tuple
    b0_t: float
    chi_ppm: np.ndarray  # truth: chi of the brain, reduced in k-space
    local_field_hz: np.ndarray  # truth: field of the brain's sources, reduced in k-space
    total_field_hz: np.ndarray  # truth: local field + background at the voxel centres
    brain_mask: np.ndarray  # bool
    deepgm: np.ndarray  # int16, labels of qsmflow/data/deepgm_labels.tsv
    tissue: np.ndarray  # uint8 labels at each output voxel centre (TISSUE_NAMES)
    metadata: dict = field(default_factory=dict)


def rotation_matrix(angles_deg) -> np.ndarray:
    """R = Rz @ Ry @ Rx for rotations (degrees) about the scanner x, y and z axes."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def scanner_affine(mni_affine, pose_deg) -> np.ndarray:
    """Voxel -> scanner affine of a head rotated by ``pose_deg`` about its centre.

    The imaging grid follows the head (as an operator tilts the slab to the head), so the
    voxel array is the head's, and its B0 direction is tilted by the pose.
    """
    pose = np.eye(4)
    rot = rotation_matrix(pose_deg)
    centre = np.asarray(ROTATION_CENTRE_MNI_MM)
    pose[:3, :3] = rot
    pose[:3, 3] = centre - rot @ centre
    return pose @ mni_affine


def b0_direction_voxel(affine) -> np.ndarray:
    direction = np.linalg.solve(np.asarray(affine)[:3, :3], [0.0, 0.0, 1.0])
    return direction / np.linalg.norm(direction)


def draw_subject(rng, b0_t: float) -> dict:
    """Per-subject tissue values: age, chi means, and M0/R2* scale factors."""
    age = float(rng.uniform(*AGE_RANGE_Y))
    t = (age - AGE_RANGE_Y[0]) / (AGE_RANGE_Y[1] - AGE_RANGE_Y[0])
    chi = {label: v[0] + v[1] * rng.standard_normal() for label, v in _TISSUES.items()}
    nuclei = {}
    for roi, (young, rise) in NUCLEUS_CHI_PPM.items():
        base = (young + rise * t) * (1.0 + 0.10 * rng.standard_normal())
        nuclei[roi] = {h: base * (1.0 + 0.05 * rng.standard_normal())
                       for h in ("left", "right")}
    return {"age_y": age, "b0_t": b0_t, "chi_ppm": chi, "nucleus_chi_ppm": nuclei,
            "m0_scale": 1.0 + 0.05 * rng.standard_normal(),
            "r2star_scale": 1.0 + 0.08 * rng.standard_normal()}


def _smooth_texture(shape, rng) -> np.ndarray:
    """Unit-variance smooth noise (about 2 mm correlation), float32 on the fine grid."""
    coarse = ndimage.gaussian_filter(rng.standard_normal(
        [n // TEXTURE_FACTOR for n in shape]).astype(np.float32), 0.7)
    coarse /= coarse.std()
    return ndimage.zoom(coarse, TEXTURE_FACTOR, order=1, grid_mode=True, mode="nearest")


def property_maps(anatomy, subject: dict, rng):
    """chi (ppm vs water), steady-state M0 term, R2* and fat fraction on the fine grid."""
    from .anatomy import deepgm_labels

    b0 = subject["b0_t"]
    column = 0 if b0 < 5.0 else 1
    n = max(_TISSUES) + 1
    lut = {key: np.zeros(n, np.float32) for key in ("chi", "tex", "m0", "t1", "r2s", "ff")}
    for label, v in _TISSUES.items():
        lut["chi"][label] = subject["chi_ppm"][label]
        lut["tex"][label], lut["m0"][label] = v[2], v[3] * subject["m0_scale"]
        lut["t1"][label], lut["r2s"][label] = v[4][column], v[5][column] * \
            subject["r2star_scale"]
        lut["ff"][label] = v[6]
    tissue = anatomy.tissue
    chi = lut["chi"][tissue] + lut["tex"][tissue] * _smooth_texture(tissue.shape, rng)
    r2s = lut["r2s"][tissue]
    t1 = lut["t1"][tissue]
    m0 = lut["m0"][tissue] * (1.0 + 0.04 * _smooth_texture(tissue.shape, rng))
    gm_chi = subject["chi_ppm"][wa.GM]
    r2_per_ppm = NUCLEUS_R2STAR_PER_PPM_3T * b0 / 3.0
    for lab in deepgm_labels():
        where = anatomy.deepgm == lab.index
        value = subject["nucleus_chi_ppm"][lab.roi][lab.hemisphere]
        chi[where] += value - lut["chi"][tissue[where]]
        r2s[where] = lut["r2s"][wa.GM] + r2_per_ppm * max(value - gm_chi, 0.0)
        t1[where] = lut["t1"][wa.GM] * (1.0 - 1.5 * value)
        m0[where] *= 0.95
    tr, flip = REPETITION_TIME_S[b0], np.deg2rad(FLIP_ANGLE_DEG[b0])
    e1 = np.exp(-tr / t1)
    del t1
    steady = (m0 * np.sin(flip) * (1.0 - e1) / (1.0 - np.cos(flip) * e1)).astype(np.float32)
    return chi.astype(np.float32), steady, r2s, lut["ff"][tissue]


def _coordinates(affine, shape, radius_mm):
    """Scanner coordinates of every voxel relative to the rotation centre, over
    ``radius_mm``, as three float32 arrays."""
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    centre = np.asarray(ROTATION_CENTRE_MNI_MM)
    out = []
    for row in range(3):
        a = np.asarray(affine[row], dtype=np.float64) / radius_mm
        shift = np.float32(a[3] - centre[row] / radius_mm)
        out.append((np.float32(a[0]) * axes[0])[:, None, None]
                   + (np.float32(a[1]) * axes[1])[None, :, None]
                   + (np.float32(a[2]) * axes[2])[None, None, :] + shift)
    return out


def shim(field_ppm, brain, affine, rng, *, radius_mm=100.0):
    """Shimmed field: minus its 0-2nd order harmonic fit over the brain, plus a residual."""
    xyz = _coordinates(affine, field_ppm.shape, radius_mm)
    sub = (slice(None, None, 3),) * 3
    basis = solid_harmonics(*[c[sub][brain[sub]] for c in xyz], max_order=2)
    coef = np.linalg.lstsq(np.stack(basis, 1).astype(np.float64),
                           field_ppm[sub][brain[sub]].astype(np.float64), rcond=None)[0]
    residual = SHIM_RESIDUAL_PPM * rng.standard_normal(16)
    residual[0] = 0.0
    change = residual.copy()
    change[:len(coef)] -= coef
    out = field_ppm + harmonic_sum(*xyz, change)
    return out, {"shim_removed_ppm": coef.tolist(), "shim_residual_ppm": residual.tolist()}


def phase_offset(affine, shape, rng, *, radius_mm=100.0):
    """Smooth transmit/receive phase: a constant plus random 1st/2nd order terms (rad)."""
    coefficients = np.concatenate([[rng.uniform(-np.pi, np.pi)],
                                   PHASE_OFFSET_RAD / 3 * rng.standard_normal(8)])
    return harmonic_sum(*_coordinates(affine, shape, radius_mm), coefficients)


def simulate(anatomy, *, b0_t=3.0, te_s=None, voxel_size_mm=1.0, pose_deg=(0.0, 0.0, 0.0),
             snr=100.0, seed=0, workers=2) -> WholeHeadScan:
    """Simulate one multi-echo GRE scan of ``anatomy`` on a ``voxel_size_mm`` grid.

    ``snr`` is the white matter's first-echo magnitude over the noise sd per channel.
    """
    te_s = tuple(ECHO_TIMES_S[b0_t] if te_s is None else te_s)
    factor = int(round(voxel_size_mm / wa.FINE_VOXEL_MM))
    if not np.isclose(factor * wa.FINE_VOXEL_MM, voxel_size_mm) or any(
            n % factor for n in anatomy.tissue.shape):
        raise ValueError(f"voxel_size_mm={voxel_size_mm} must be a multiple of 0.5 mm that "
                         f"divides the fine grid {anatomy.tissue.shape}")
    rng = np.random.default_rng(seed)
    subject = draw_subject(rng, b0_t)
    fine_affine = scanner_affine(anatomy.affine, pose_deg)
    b0_dir = b0_direction_voxel(fine_affine)
    chi, steady, r2s, fat_fraction = property_maps(anatomy, subject, rng)
    hz_per_ppm = GYROMAGNETIC_RATIO_HZ_PER_T * b0_t * PPM
    vox = wa.FINE_VOXEL_MM
    pad = int(round(FIELD_PAD_MM / vox))
    brain_chi = chi * anatomy.brain
    local = continuous_dipole_field_ppm(brain_chi, vox, b0_dir, pad_vox=pad, workers=workers)
    local_field_hz = kspace_reduce(local, factor, workers=workers) * hz_per_ppm
    chi_truth = kspace_reduce(brain_chi, factor, workers=workers)
    del brain_chi
    total = continuous_dipole_field_ppm(chi - np.float32(AIR_MINUS_TISSUE_CHI_PPM), vox,
                                        b0_dir, pad_vox=pad, workers=workers,
                                        extend_low_z_vox=int(round(NECK_EXTENSION_MM / vox)))
    del chi
    total, shim_info = shim(total, anatomy.brain, fine_affine, rng)
    # True total field: the background (sources outside the brain, harmonic inside it)
    # sampled at the output voxel centres, plus the reduced local field. Cropping the
    # spectrum of the background would ring (it jumps by ppm at air and bone) and make it
    # non-harmonic in the brain, which no background removal could undo.
    step = (slice(None, None, factor),) * 3
    total_field_hz = (total[step] - local[step]) * hz_per_ppm + local_field_hz
    del local
    phi0 = phase_offset(fine_affine, total.shape, rng)
    fat = fat_fraction > 0
    echoes = []
    for te in te_s:
        phase = phi0 + np.float32(2 * np.pi * hz_per_ppm * te) * total
        signal = (steady * np.exp(np.float32(-te) * r2s)) * np.exp(1j * phase).astype(
            np.complex64)
        del phase
        shift = np.complex64(np.exp(2j * np.pi * FAT_SHIFT_PPM * hz_per_ppm * te))
        signal[fat] *= (1.0 - fat_fraction[fat]) + fat_fraction[fat] * shift
        echoes.append(kspace_reduce(signal, factor, workers=workers))
        del signal
    out_affine = fine_affine @ np.diag([factor, factor, factor, 1.0])
    brain = fraction_reduce(anatomy.brain, factor) > 0.5
    tissue = anatomy.tissue[::factor, ::factor, ::factor]
    wm = (tissue == wa.WM) & brain
    noise_sd = float(np.mean(np.abs(echoes[0][wm]))) / snr
    magnitude, phase = [], []
    for s in echoes:
        s = s + (noise_sd * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
                 ).astype(np.complex64)
        magnitude.append(np.abs(s).astype(np.float32))
        phase.append(np.angle(s).astype(np.float32))
    metadata = {"subject": anatomy.subject, "seed": seed, "pose_deg": list(pose_deg),
                "b0_direction_voxel": b0_dir.tolist(), "snr_wm_echo1": snr,
                "noise_sd": noise_sd, "fine_voxel_mm": vox, "voxel_size_mm": voxel_size_mm,
                "age_y": subject["age_y"],
                "tissue_chi_ppm": {wa.TISSUE_NAMES[k]: float(v)
                                   for k, v in subject["chi_ppm"].items()},
                "nucleus_chi_ppm": subject["nucleus_chi_ppm"], **shim_info,
                "registration": anatomy.registration}
    return WholeHeadScan(out_affine, np.stack(magnitude, -1), np.stack(phase, -1), te_s,
                         b0_t, chi_truth * brain, local_field_hz, total_field_hz, brain,
                         label_reduce(anatomy.deepgm, factor), tissue, metadata)
