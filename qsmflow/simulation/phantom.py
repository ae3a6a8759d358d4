"""Susceptibility, magnitude and multi-echo GRE signal of an MNI-based head phantom.

Tissue susceptibilities (ppm, relative to CSF) follow in-vivo 3T literature values
(Deistung et al. NeuroImage 2013; Lim et al. NeuroImage 2013; Li et al. NeuroImage 2014);
R2* values follow Peran et al. (2007) and Deistung et al. (2013).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from qsmflow.algorithms.dipole import b0_direction_from_affine, forward_field_ppm
from qsmflow.constants import AIR_MINUS_TISSUE_CHI_PPM, rad_per_ppm

from .anatomy import MNIAnatomy, deepgm_labels, load_mni_anatomy

# Susceptibility (ppm, relative to CSF), R2* (1/s at 3T) and proton density (a.u.).
TISSUE_CHI_PPM = {
    "csf": 0.0, "gm": 0.02, "wm": -0.03, "caudate": 0.06, "putamen": 0.05,
    "globus_pallidus": 0.16, "thalamus": 0.01, "substantia_nigra": 0.13,
    "red_nucleus": 0.10, "dentate_nucleus": 0.10, "vein": 0.35, "bone": -2.0,
    "soft_tissue": 0.0, "hemorrhage": 1.0, "calcification": -0.8,
}
SINUS_GAP_MM = 3  # least distance between an air cavity and the brain (model grid of 1 mm)
TISSUE_R2STAR_HZ = {
    "csf": 3.0, "gm": 16.0, "wm": 21.0, "caudate": 24.0, "putamen": 27.0,
    "globus_pallidus": 45.0, "thalamus": 21.0, "substantia_nigra": 42.0,
    "red_nucleus": 35.0, "dentate_nucleus": 35.0, "vein": 45.0, "bone": 300.0,
    "soft_tissue": 20.0, "hemorrhage": 90.0, "calcification": 150.0,
}


@dataclass
class HeadModel:
    """A phantom on the 1 mm MNI grid: everything a forward simulation needs."""

    affine: np.ndarray
    chi_ppm: np.ndarray  # tissue susceptibility relative to CSF (0 outside the head)
    air: np.ndarray  # bool: air outside the head and in sinuses
    brain: np.ndarray  # bool
    deepgm: np.ndarray  # int16 labels
    r2star_hz: np.ndarray
    proton_density: np.ndarray
    lesions: list = field(default_factory=list)


def _ellipsoid(world, centre, semi_axes):
    c = np.asarray(centre, float).reshape(3, *([1] * (world.ndim - 1)))
    a = np.asarray(semi_axes, float).reshape(3, *([1] * (world.ndim - 1)))
    return (((world - c) / a) ** 2).sum(0) <= 1.0


def _world_grid(affine, shape):
    ijk = np.indices(shape, dtype=np.float32)
    return np.einsum("ij,j...->i...", affine[:3, :3].astype(np.float32), ijk) + \
        affine[:3, 3].astype(np.float32).reshape(3, 1, 1, 1)


def _random_veins(rng, brain, n_veins, radius_mm=(0.8, 1.6)):
    """Smoothed random walks that start near the cortical surface: pial veins."""
    surface = brain & ~ndimage.binary_erosion(brain, iterations=4)
    candidates = np.argwhere(surface)
    veins = np.zeros(brain.shape, bool)
    for _ in range(n_veins):
        point = candidates[rng.integers(len(candidates))].astype(float)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        radius = rng.uniform(*radius_mm)
        points = []
        for _ in range(int(rng.integers(30, 80))):
            direction += 0.25 * rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            point = point + direction
            points.append(point.copy())
        points = np.asarray(points).round().astype(int)
        points = points[np.all((points >= 0) & (points < np.array(brain.shape)), axis=1)]
        trace = np.zeros(brain.shape, bool)
        trace[tuple(points.T)] = True
        veins |= ndimage.binary_dilation(trace, iterations=max(int(round(radius)) - 1, 0)) \
            if radius >= 1.5 else trace
    veins = ndimage.binary_dilation(veins, iterations=1)
    return veins & ndimage.binary_dilation(brain, iterations=2)


def build_head_model(
    rng: np.random.Generator | None = None,
    *,
    anatomy: MNIAnatomy | None = None,
    tissue_chi_ppm: dict | None = None,
    chi_jitter: float = 0.0,
    n_veins: int = 20,
    lesions: tuple[tuple[str, tuple, float], ...] = (),
    sinuses: bool = True,
) -> HeadModel:
    """Build a susceptibility/magnitude head model on the 1 mm MNI grid.

    Parameters
    ----------
    rng : numpy Generator
        Drives veins and the per-tissue jitter; seed it for reproducible phantoms.
    tissue_chi_ppm : dict, optional
        Overrides of :data:`TISSUE_CHI_PPM`.
    chi_jitter : float
        Relative random change of each tissue's susceptibility (training variety).
    lesions : tuple of (kind, centre_mni_mm, radius_mm)
        ``kind`` is ``"hemorrhage"`` or ``"calcification"``.
    """
    rng = rng or np.random.default_rng(0)
    anatomy = anatomy or load_mni_anatomy()
    values = dict(TISSUE_CHI_PPM, **(tissue_chi_ppm or {}))
    if chi_jitter:
        values = {k: v * (1 + chi_jitter * rng.uniform(-1, 1)) for k, v in values.items()}
    shape = anatomy.t1.shape
    world = _world_grid(anatomy.affine, shape)

    brain = anatomy.brain
    chi = np.zeros(shape, np.float32)
    r2s = np.zeros(shape, np.float32)
    gm_frac = np.clip(anatomy.gm, 0, 1)
    wm_frac = np.clip(anatomy.wm, 0, 1)
    csf_frac = np.clip(1 - gm_frac - wm_frac, 0, 1)
    chi[brain] = (gm_frac * values["gm"] + wm_frac * values["wm"] + csf_frac * values["csf"])[brain]
    r2s[brain] = (gm_frac * TISSUE_R2STAR_HZ["gm"] + wm_frac * TISSUE_R2STAR_HZ["wm"]
                  + csf_frac * TISSUE_R2STAR_HZ["csf"])[brain]
    for label in deepgm_labels():
        region = anatomy.deepgm == label.index
        chi[region] = values[label.roi]
        r2s[region] = TISSUE_R2STAR_HZ[label.roi]

    head = anatomy.head
    scalp = head & ~ndimage.binary_dilation(brain, iterations=9)
    bone = head & ~brain & ~scalp & ~ndimage.binary_dilation(brain, iterations=3)
    soft = head & ~brain & ~bone
    chi[bone] = values["bone"]
    r2s[bone] = TISSUE_R2STAR_HZ["bone"]
    r2s[soft] = TISSUE_R2STAR_HZ["soft_tissue"]

    air = ~head
    near_brain = ndimage.binary_dilation(brain, iterations=SINUS_GAP_MM)
    if sinuses:
        # Frontal and sphenoid sinuses and mastoid air cells: the air/tissue
        # interfaces that make the strong background fields of real heads.
        for centre, axes in [((0, 62, -8), (14, 8, 10)), ((0, 18, -30), (11, 11, 9)),
                             ((-52, -28, -40), (8, 9, 8)), ((52, -28, -40), (8, 9, 8))]:
            # Bone and dura keep real sinuses a few mm from the brain.
            air |= _ellipsoid(world, centre, axes) & ~near_brain
    chi[air] = 0.0
    r2s[air] = 0.0

    veins = _random_veins(rng, brain, n_veins) if n_veins else np.zeros(shape, bool)
    # Superior sagittal sinus: a large vein along the midline above the brain.
    sss = (np.abs(world[0]) < 3.5) & head & ~brain & \
        ndimage.binary_dilation(brain, iterations=4) & (world[2] > 10)
    for region in (veins, sss):
        chi[region] = values["vein"]
        r2s[region] = TISSUE_R2STAR_HZ["vein"]

    lesion_list = []
    for kind, centre, radius in lesions:
        region = _ellipsoid(world, centre, (radius, radius, radius)) & brain
        chi[region] = values[kind]
        r2s[region] = TISSUE_R2STAR_HZ[kind]
        lesion_list.append((kind, centre, radius))

    pd = np.where(head, 0.35 + 0.65 * anatomy.t1, 0.0).astype(np.float32)
    pd[bone] *= 0.1
    pd[air] = 0.0
    return HeadModel(anatomy.affine, chi, air, brain, anatomy.deepgm, r2s, pd, lesion_list)


def rigid_pose(rotation_deg=(0, 0, 0), translation_mm=(0, 0, 0)) -> np.ndarray:
    """4x4 rigid transform (rotations about x, then y, then z, in degrees) + translation."""
    ax, ay, az = np.deg2rad(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = rz @ ry @ rx
    pose[:3, 3] = translation_mm
    return pose


def acquisition_affine(grid_rotation_deg, shape=(88, 104, 88), voxel_size_mm=2.0):
    """Voxel-to-scanner affine of a grid centred on the isocentre, rotated for obliquity."""
    scale = np.diag([voxel_size_mm] * 3 + [1.0])
    centre = np.eye(4)
    centre[:3, 3] = -(np.asarray(shape) - 1) / 2.0
    shift = np.eye(4)
    shift[:3, 3] = (0.0, -18.0, 14.0)  # MNI origin is not the head's centre
    return shift @ rigid_pose(grid_rotation_deg) @ scale @ centre


def sample_on_grid(volume, source_affine, target_affine, target_shape, *, head_pose=None,
                   order=1):
    """Resample a volume into a target grid, with the head moved by ``head_pose``.

    ``head_pose`` maps head (source world) coordinates to scanner world coordinates.
    """
    pose = np.eye(4) if head_pose is None else np.asarray(head_pose)
    mapping = np.linalg.inv(source_affine) @ np.linalg.inv(pose) @ target_affine
    return ndimage.affine_transform(np.asarray(volume, dtype=np.float32 if order else
                                               volume.dtype), mapping, output_shape=target_shape,
                                    order=order, mode="constant", cval=0.0)


@dataclass
class Acquisition:
    """A simulated multi-echo GRE acquisition and its ground truth on the native grid."""

    affine: np.ndarray
    magnitude: np.ndarray  # (X, Y, Z, N)
    phase_rad: np.ndarray  # (X, Y, Z, N), wrapped
    te_s: np.ndarray
    b0_t: float
    chi_ppm: np.ndarray  # ground truth in the native grid
    brain_mask: np.ndarray
    deepgm: np.ndarray
    local_field_ppm: np.ndarray  # field of the sources inside the brain mask
    total_field_ppm: np.ndarray


def acquire(
    model: HeadModel,
    target_affine: np.ndarray,
    target_shape,
    *,
    te_s=(0.005, 0.012, 0.019),
    b0_t: float = 3.0,
    head_pose=None,
    snr: float = 60.0,
    phase_offset_rad: float = 1.0,
    rng: np.random.Generator | None = None,
) -> Acquisition:
    """Simulate a multi-echo GRE scan of ``model`` on a (possibly oblique) grid.

    The field is computed on the native grid from the resampled susceptibility, with
    air at +9.41 ppm relative to tissue, B0 along the scanner z axis (its direction in
    voxel coordinates comes from ``target_affine``), a smooth echo-independent phase
    offset, and complex Gaussian noise (``snr`` relative to the brain's mean first-echo
    magnitude).
    """
    rng = rng or np.random.default_rng(0)
    te_s = np.asarray(te_s, dtype=np.float64)
    target_shape = tuple(target_shape)
    pose = np.eye(4) if head_pose is None else np.asarray(head_pose)

    def resample(volume, order=1):
        return sample_on_grid(volume, model.affine, target_affine, target_shape,
                              head_pose=pose, order=order)

    chi = resample(model.chi_ppm)
    brain = resample(model.brain.astype(np.float32)) > 0.5
    deepgm = resample(model.deepgm, order=0).astype(np.int16)
    r2s = resample(model.r2star_hz)
    pd = resample(model.proton_density)

    voxel_size = np.linalg.norm(target_affine[:3, :3], axis=0)
    b0_dir = b0_direction_from_affine(target_affine)
    brain_field = forward_field_ppm(chi * brain, voxel_size, b0_dir)
    local_field = brain_field * brain
    # The background (air, bone, scalp, veins outside the brain) is computed on the
    # phantom's 1 mm grid and interpolated: it is smooth inside the brain, and a native
    # grid would add the Gibbs ringing of a 9.4 ppm step that no real field has. Its
    # sources are those outside *this grid's* brain mask, seen on the model grid, so that
    # no source is counted twice or lost where the two grids' masks differ: the
    # background is then harmonic inside the mask, as a real one is.
    brain_on_model = sample_on_grid(brain.astype(np.uint8), target_affine, model.affine,
                                    model.brain.shape, head_pose=np.linalg.inv(pose),
                                    order=0).astype(bool)
    total_field = brain_field + resample(background_field_ppm(model, pose, brain_on_model))

    grid = np.indices(target_shape, dtype=np.float64)
    centre = (np.asarray(target_shape, float) - 1)[:, None, None, None] / 2
    r = (grid - centre) / (np.asarray(target_shape, float)[:, None, None, None] / 2)
    offset = phase_offset_rad * (1.0 + 0.6 * r[0] - 0.4 * r[1] + 0.3 * r[0] * r[2]
                                 + 0.5 * r[2] ** 2)
    signal_ref = pd[brain].mean() if brain.any() else 1.0
    noise_sd = signal_ref / snr
    mags, phases = [], []
    for te in te_s:
        phase = offset + rad_per_ppm(b0_t, te) * total_field
        s = pd * np.exp(-r2s * te) * np.exp(1j * phase)
        s = s + noise_sd * (rng.normal(size=s.shape) + 1j * rng.normal(size=s.shape))
        mags.append(np.abs(s))
        phases.append(np.angle(s))
    return Acquisition(target_affine, np.stack(mags, -1), np.stack(phases, -1), te_s, b0_t,
                       chi * (pd > 0), brain, deepgm, local_field, total_field)


def background_field_ppm(model: HeadModel, head_pose: np.ndarray,
                         brain: np.ndarray | None = None) -> np.ndarray:
    """Field (ppm) of everything outside ``brain``, on the model's grid, for this pose.

    Susceptibility is taken relative to air (air 0, tissue -9.41 ppm + its own value),
    so that the zero padding of the FFT is air, as around a real head. The air mask is
    smoothed by a partial-volume blur of 0.6 mm to limit ringing at the 1 mm grid.
    Inside ``brain`` (default: the model's brain) the susceptibility is that of plain
    tissue, uniform, so that its field is harmonic there.
    """
    brain = model.brain if brain is None else brain
    air = ndimage.gaussian_filter(model.air.astype(np.float32), 0.6)
    chi_relative_to_air = (1.0 - air) * (model.chi_ppm - AIR_MINUS_TISSUE_CHI_PPM)
    chi_relative_to_air[brain] = -AIR_MINUS_TISSUE_CHI_PPM
    # B0 is the scanner's z axis; in head coordinates it is rotated by the pose.
    b0_head = np.asarray(head_pose)[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    axes = model.affine[:3, :3] / np.linalg.norm(model.affine[:3, :3], axis=0)
    b0_vox = np.linalg.solve(axes, b0_head)
    voxel_size = np.linalg.norm(model.affine[:3, :3], axis=0)
    return forward_field_ppm(chi_relative_to_air, voxel_size, b0_vox, pad_vox=32)
