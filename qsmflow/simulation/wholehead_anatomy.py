"""Whole-head anatomy of the realistic phantom: BrainWeb heads + registered cavities and nuclei.

Independent of the MNI-based generator (``phantom.py``): the tissues are the 20 BrainWeb
crisp models (0.5 mm, scalp, fat, muscle, skull, marrow, dura, vessels, CSF, GM, WM);
the air cavities (sinuses, airways) come from the Colin27 head model, registered to each
subject with an affine ANTs registration of class images; the deep gray nuclei come from
registering the ICBM 2009a template T1 (nilearn) to a T1-like image made from the
subject's labels (ANTs SyN), which carries the AAL3 deep gray labels and the SUIT
dentate nuclei, kept only on the subject's GM/WM voxels.

Arrays here are on the *fine grid*: the BrainWeb 0.5 mm grid, axes (x, y, z) (the files
store (z, y, x)), padded with air to :data:`FINE_SHAPE` so that 1 mm and 2 mm grids
divide it exactly and the head does not touch the field of view's sides.

References
----------
Aubert-Broche B, Griffin M, Pike GB, Evans AC, Collins DL. Twenty new digital brain
phantoms for creation of validation image data bases. IEEE TMI 2006;25:1410-1416.
Holmes CJ et al. Enhancement of MR images using registration for signal averaging.
J Comput Assist Tomogr 1998;22:324-333 (Colin27).
Fonov V et al. Unbiased average age-appropriate atlases for pediatric studies.
NeuroImage 2011;54:313-327 (ICBM 2009a).
Rolls ET, Huang CC, Lin CP, Feng J, Joliot M. Automated anatomical labelling atlas 3.
NeuroImage 2020;206:116189 (AAL3).
Diedrichsen J et al. Imaging the deep cerebellar nuclei: a probabilistic atlas and
normalization procedure. NeuroImage 2011;54:1786-1794 (SUIT dentate).
Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration.
Med Image Anal 2008;12:26-41 (ANTs SyN).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

# BrainWeb crisp labels, and the label given here to the registered Colin27 air cavities.
AIR, CSF, GM, WM, FAT, MUSCLE, SKIN, SKULL, VESSELS, CONNECTIVE, DURA, MARROW = range(12)
CAVITY = 12
TISSUE_NAMES = ("air", "csf", "gm", "wm", "fat", "muscle", "muscle_skin", "skull", "vessels",
                "connective", "dura", "marrow", "air_cavity")
COLIN_CAVITY_LABEL = 6
COLIN_CLASS_VALUE = {1: 0.5, 2: 0.15, 3: 0.3, 4: 0.7, 5: 1.0, 6: 0.0}  # scalp..air
BRAINWEB_CLASS_VALUE = {CSF: 0.3, GM: 0.7, WM: 1.0, FAT: 0.5, MUSCLE: 0.5, SKIN: 0.5,
                        SKULL: 0.15, VESSELS: 0.7, CONNECTIVE: 0.5, DURA: 0.3, MARROW: 0.15}

FINE_VOXEL_MM = 0.5
BRAINWEB_SHAPE_XYZ = (362, 434, 362)
FINE_PAD_VOX = ((15, 15), (13, 13), (1, 1))  # air around the model: 392 x 460 x 364
FINE_SHAPE = tuple(n + a + b for n, (a, b) in zip(BRAINWEB_SHAPE_XYZ, FINE_PAD_VOX,
                                                   strict=True))
# The deep gray nuclei lie inside this MNI box (mm); the atlas is carried only into it.
DGM_BOX_MNI_MM = ((-50.0, 50.0), (-95.0, 45.0), (-60.0, 45.0))
CAVITY_MARGIN_MM = 20.0  # search margin around the Colin27 cavities after registration
BRAIN_CLOSING_MM = 2.0  # bridges narrow sulci when finding the ventricles
VENTRICLE_GROW_MM = 1.5  # subject CSF this close to the registered template ventricles
TEMPLATE_VENTRICLE_DEPTH_MM = 4.0  # template CSF this deep inside its brain: ventricles
REGISTRATION_FACTOR = 4  # registrations run on a 2 mm grid (block means of the 0.5 mm one)
ANATOMY_VERSION = "1"  # bump when the construction below changes (cache key)

# SyN settings of the nuclei registration (as the pipeline's atlas step: 2 mm at most).
SYN_ITERATIONS = (60, 30, 0)
AFFINE_ITERATIONS = (500, 250, 100, 0)


@dataclass(frozen=True)
class WholeHeadAnatomy:
    """One subject's labels on the fine grid (axes x, y, z; MNI world coordinates)."""

    subject: str
    affine: np.ndarray  # fine voxel -> MNI mm
    tissue: np.ndarray  # uint8 labels AIR..CAVITY
    deepgm: np.ndarray  # int16 deep gray labels (qsmflow/data/deepgm_labels.tsv), 0 elsewhere
    brain: np.ndarray  # bool: GM + WM + deep gray + ventricles (no CSF outside the surface)
    registration: dict  # quality numbers of the two registrations


def brainweb_file(heads_dir: Path, subject: str) -> Path:
    return Path(heads_dir) / "brainweb" / f"subject{subject}_crisp.nii.gz"


def load_brainweb(heads_dir: Path, subject: str) -> tuple[np.ndarray, np.ndarray]:
    """BrainWeb labels on the padded fine grid, axes (x, y, z), and their affine."""
    path = brainweb_file(heads_dir, subject)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the folder of the BrainWeb "
                                "heads (shared/data/heads) with --heads-dir.")
    img = nib.load(path)
    order = [int(np.argmax(np.abs(img.affine[axis, :3]))) for axis in range(3)]
    labels = np.transpose(np.asarray(img.dataobj, dtype=np.uint8), order)  # -> (x, y, z)
    linear = img.affine[:3, :3][:, order]
    if not np.allclose(linear, np.diag([FINE_VOXEL_MM] * 3)):
        raise ValueError(f"{path}: expected a 0.5 mm axis-aligned grid, got {img.affine}")
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = img.affine[:3, 3] - FINE_VOXEL_MM * np.array([p[0] for p in FINE_PAD_VOX])
    return np.pad(labels, FINE_PAD_VOX), affine


def _ants_image(array, affine):
    """An ANTs image from an axis-aligned array (world coordinates taken as they are)."""
    import ants

    return ants.from_numpy(np.ascontiguousarray(array, dtype=np.float32),
                           origin=tuple(float(v) for v in affine[:3, 3]),
                           spacing=tuple(float(v) for v in np.diag(affine)[:3]))


def _block_mean(array, factor):
    shape = [n // factor for n in array.shape]
    trimmed = array[:shape[0] * factor, :shape[1] * factor, :shape[2] * factor]
    return trimmed.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(
        axis=(1, 3, 5), dtype=np.float32)


def _coarse(array, affine, factor):
    """Block mean by ``factor``; the affine of the block centres."""
    coarse_affine = affine.copy()
    coarse_affine[:3, :3] *= factor
    coarse_affine[:3, 3] += affine[:3, :3] @ np.full(3, (factor - 1) / 2.0)
    return _block_mean(array, factor), coarse_affine


def _box(affine, shape, box_mm):
    """Slices of the fine grid inside a world-coordinate box."""
    inv = np.linalg.inv(affine)
    lo = inv[:3, :3] @ np.array([b[0] for b in box_mm]) + inv[:3, 3]
    hi = inv[:3, :3] @ np.array([b[1] for b in box_mm]) + inv[:3, 3]
    return tuple(slice(max(int(np.floor(min(a, b))), 0), min(int(np.ceil(max(a, b))) + 1, n))
                 for a, b, n in zip(lo, hi, shape, strict=True))


def _box_affine(affine, box):
    sub = affine.copy()
    sub[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
    return sub


def _dice(a, b) -> float:
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def _closed_parenchyma(tissue, deepgm, voxel_mm=FINE_VOXEL_MM):
    """GM/WM (+ nuclei) closed by a ``BRAIN_CLOSING_MM`` ball and filled, and the box of it."""
    parenchyma = (tissue == GM) | (tissue == WM) | (deepgm > 0)
    box = ndimage.find_objects(parenchyma.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 12, 0), s.stop + 12) for s in box)
    par = parenchyma[box]
    dilated = ndimage.distance_transform_edt(~par, sampling=voxel_mm) <= BRAIN_CLOSING_MM
    closed = ndimage.distance_transform_edt(dilated, sampling=voxel_mm) > BRAIN_CLOSING_MM
    return ndimage.binary_fill_holes(closed | par), par, box


def true_brain_mask(tissue, deepgm, ventricles, voxel_mm=FINE_VOXEL_MM):
    """GM + WM + deep gray + ventricles, without the CSF outside the brain's surface.

    ``ventricles`` is the template's ventricular CSF carried by the nuclei registration;
    the subject's CSF counts as ventricle within ``VENTRICLE_GROW_MM`` of it and inside
    the parenchyma closed by a ``BRAIN_CLOSING_MM`` ball; holes left are filled.
    """
    closed, par, box = _closed_parenchyma(tissue, deepgm, voxel_mm)
    near = ndimage.distance_transform_edt(~ventricles[box], sampling=voxel_mm) <= \
        VENTRICLE_GROW_MM
    csf = (tissue[box] == CSF) & closed & near
    out = np.zeros(tissue.shape, bool)
    out[box] = ndimage.binary_fill_holes(par | csf)
    return out


def register_cavities(tissue, affine, heads_dir: Path, *, seed: int) -> tuple[np.ndarray, dict]:
    """Colin27 air cavities on the fine grid: affine ANTs registration of class images."""
    # ANTs' transforms go to a folder removed afterwards, not left in /tmp.
    with tempfile.TemporaryDirectory(prefix="qsmflow_ants_") as tmp:
        return _register_cavities(tissue, affine, heads_dir, seed=seed, outprefix=f"{tmp}/")


def _register_cavities(tissue, affine, heads_dir, *, seed, outprefix):
    import ants

    img = nib.load(Path(heads_dir) / "colin27_mcx_labels.nii.gz")
    colin = np.asarray(img.dataobj, dtype=np.uint8)
    colin_affine = np.eye(4)
    colin_affine[:3, 3] = (-90.0, -126.0, -72.0)  # the README's MNI/BrainWeb 1 mm grid
    colin_img = np.zeros(colin.shape, np.float32)
    for label, value in COLIN_CLASS_VALUE.items():
        colin_img[colin == label] = value
    subject_img = np.zeros(tissue.shape, np.float32)
    for label, value in BRAINWEB_CLASS_VALUE.items():
        subject_img[tissue == label] = value
    fixed_array, fixed_affine = _coarse(subject_img, affine, REGISTRATION_FACTOR)
    del subject_img
    fixed = _ants_image(fixed_array, fixed_affine)
    moving = _ants_image(colin_img, colin_affine)
    result = ants.registration(fixed, moving, type_of_transform="Affine",
                               aff_iterations=AFFINE_ITERATIONS, random_seed=seed,
                               outprefix=outprefix)
    # Quality: head-mask Dice before (identity) and after registration, at 2 mm.
    colin_head = _ants_image((colin > 0).astype(np.float32), colin_affine)
    head_fixed = fixed_array > 0.05
    before = ants.resample_image_to_target(colin_head, fixed, interp_type="nearestNeighbor")
    after = ants.apply_transforms(fixed, colin_head, result["fwdtransforms"],
                                  interpolator="nearestNeighbor")
    quality = {"colin_head_dice_identity": _dice(before.numpy() > 0.5, head_fixed),
               "colin_head_dice_affine": _dice(after.numpy() > 0.5, head_fixed)}
    # The cavities are carried (linear interpolation, > 0.5) into a fine-grid box around
    # where they lie in Colin27 space, grown by a margin that covers the registration.
    where = np.argwhere(colin == COLIN_CAVITY_LABEL)
    lo = colin_affine[:3, :3] @ where.min(0) + colin_affine[:3, 3] - CAVITY_MARGIN_MM
    hi = colin_affine[:3, :3] @ where.max(0) + colin_affine[:3, 3] + CAVITY_MARGIN_MM
    box = _box(affine, tissue.shape, tuple(zip(lo, hi, strict=True)))
    reference = _ants_image(np.zeros([s.stop - s.start for s in box], np.float32),
                            _box_affine(affine, box))
    cavity_img = _ants_image((colin == COLIN_CAVITY_LABEL).astype(np.float32), colin_affine)
    warped = ants.apply_transforms(reference, cavity_img, result["fwdtransforms"],
                                   interpolator="linear").numpy() > 0.5
    cavity = np.zeros(tissue.shape, bool)
    cavity[box] = warped
    return cavity, quality


def suit_dir_of(heads_dir: Path) -> Path:
    """The SUIT atlas folder beside the heads folder (shared/data/suit_cerebellum)."""
    return Path(heads_dir).parent / "suit_cerebellum"


def _atlas_on_template(suit_dir: Path):
    """Template T1 (brain), its affine, and AAL3 deep gray + SUIT dentate labels on its grid."""
    from qsmflow.simulation.anatomy import deepgm_labels, load_mni_anatomy

    mni = load_mni_anatomy()
    labels = mni.deepgm.copy()
    dentate = {lab.hemisphere: lab.index for lab in deepgm_labels()
               if lab.roi == "dentate_nucleus"}
    labels[np.isin(labels, list(dentate.values()))] = 0  # drop the ellipsoid approximation
    suit_img = nib.load(Path(suit_dir) / "atl-Anatom_space-MNISym_dseg.nii.gz")
    suit = np.asarray(suit_img.dataobj, dtype=np.int16)
    ijk = np.indices(labels.shape).reshape(3, -1)
    world = mni.affine[:3, :3] @ ijk + mni.affine[:3, 3:4]
    inv = np.linalg.inv(suit_img.affine)
    suit_on_grid = ndimage.map_coordinates(suit, inv[:3, :3] @ world + inv[:3, 3:4], order=0,
                                           mode="constant").reshape(labels.shape)
    for suit_label, hemisphere in ((29, "left"), (30, "right")):  # SUIT dentate labels
        labels[suit_on_grid == suit_label] = dentate[hemisphere]
    csf = mni.brain & (1.0 - mni.gm - mni.wm > 0.5)
    ventricles = csf & (ndimage.distance_transform_edt(mni.brain) > TEMPLATE_VENTRICLE_DEPTH_MM)
    return mni.t1 * mni.brain, mni.affine, labels, ventricles, (mni.t1[mni.gm > 0.6].mean(),
                                                     mni.t1[mni.wm > 0.6].mean(),
                                                     mni.t1[mni.brain & (mni.gm + mni.wm < 0.2)]
                                                     .mean())


def register_deep_gray(tissue, brain_guess, affine, suit_dir: Path, *, seed: int):
    """AAL3 + SUIT dentate labels on the fine grid, restricted to the subject's GM/WM.

    Returns the labels, the template's ventricles on the fine grid, and quality numbers.
    """
    with tempfile.TemporaryDirectory(prefix="qsmflow_ants_") as tmp:
        return _register_deep_gray(tissue, brain_guess, affine, suit_dir, seed=seed,
                                   outprefix=f"{tmp}/")


def _register_deep_gray(tissue, brain_guess, affine, suit_dir, *, seed, outprefix):
    import ants

    template, template_affine, template_labels, template_ventricles, (t_gm, t_wm, t_csf) = \
        _atlas_on_template(suit_dir)
    t1_like = np.zeros(tissue.shape, np.float32)
    for label, value in ((CSF, t_csf), (GM, t_gm), (WM, t_wm), (VESSELS, t_gm)):
        t1_like[(tissue == label) & brain_guess] = value
    fixed_array, fixed_affine = _coarse(t1_like, affine, REGISTRATION_FACTOR)
    del t1_like
    fixed = _ants_image(fixed_array, fixed_affine)
    moving = _ants_image(template, template_affine)
    result = ants.registration(fixed, moving, type_of_transform="SyN",
                               reg_iterations=SYN_ITERATIONS, aff_iterations=AFFINE_ITERATIONS,
                               random_seed=seed, outprefix=outprefix)
    warped = result["warpedmovout"].numpy()
    inside = fixed_array > 0
    quality = {"template_t1_correlation": float(np.corrcoef(warped[inside],
                                                            fixed_array[inside])[0, 1])}
    box = _box(affine, tissue.shape, DGM_BOX_MNI_MM)
    reference = _ants_image(np.zeros([s.stop - s.start for s in box], np.float32),
                            _box_affine(affine, box))
    labels = ants.apply_transforms(reference, _ants_image(template_labels, template_affine),
                                   result["fwdtransforms"], interpolator="genericLabel")
    deepgm = np.zeros(tissue.shape, np.int16)
    sub = np.rint(labels.numpy()).astype(np.int16)
    deepgm[box] = np.where(np.isin(tissue[box], (GM, WM)), sub, 0)
    vent = ants.apply_transforms(reference, _ants_image(template_ventricles, template_affine),
                                 result["fwdtransforms"], interpolator="linear")
    ventricles = np.zeros(tissue.shape, bool)
    ventricles[box] = vent.numpy() > 0.5
    return deepgm, ventricles, quality


def build_anatomy(heads_dir: Path, subject: str, *, cache_dir: Path | None = None,
                  seed: int = 0) -> WholeHeadAnatomy:
    """Labels of one BrainWeb subject with cavities, nuclei and the true brain (cached)."""
    cache = (Path(cache_dir) / f"wholehead_v{ANATOMY_VERSION}_sub{subject}.npz"
             if cache_dir else None)
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            registration = dict(zip(z["reg_keys"].tolist(), z["reg_values"].tolist(),
                                    strict=True))
            return WholeHeadAnatomy(subject, z["affine"], z["tissue"], z["deepgm"],
                                    z["brain"], registration)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    tissue, affine = load_brainweb(heads_dir, subject)
    cavity, reg_cavity = register_cavities(tissue, affine, heads_dir, seed=seed)
    # Air only where BrainWeb has extracranial tissue, and 1 mm away from the brain.
    intracranial = np.isin(tissue, (CSF, GM, WM, VESSELS, DURA))
    near_brain = ndimage.distance_transform_edt(~intracranial, sampling=FINE_VOXEL_MM) < 1.0
    cavity &= np.isin(tissue, (FAT, MUSCLE, SKIN, SKULL, CONNECTIVE, MARROW)) & ~near_brain
    tissue[cavity] = CAVITY
    closed, _, box = _closed_parenchyma(tissue, np.zeros(tissue.shape, np.int16))
    brain_guess = np.zeros(tissue.shape, bool)
    brain_guess[box] = closed
    deepgm, ventricles, reg_dgm = register_deep_gray(tissue, brain_guess, affine,
                                                     suit_dir_of(heads_dir), seed=seed)
    brain = true_brain_mask(tissue, deepgm, ventricles)
    registration = {**reg_cavity, **reg_dgm,
                    "cavity_ml": float(cavity.sum() * FINE_VOXEL_MM**3 / 1000.0)}
    if cache is not None:
        from qsmflow.files import atomic_write

        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda tmp: np.savez_compressed(
            tmp, affine=affine, tissue=tissue, deepgm=deepgm, brain=brain,
            reg_keys=np.array(list(registration)), reg_values=np.array(
                list(registration.values()), dtype=float)))
    return WholeHeadAnatomy(subject, affine, tissue, deepgm, brain, registration)
