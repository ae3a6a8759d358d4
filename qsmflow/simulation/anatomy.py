"""The phantom's anatomy: the default atlas's template and labels, plus a head mask.

The brain, tissue maps and deep gray labels (AAL3 + the SUIT dentate nuclei) are those of
``qsmflow.atlases.anatomy``; this module adds only what a phantom needs beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from qsmflow.atlases.anatomy import DeepGMLabel, deepgm_labels, load_template_anatomy

__all__ = ["DeepGMLabel", "MNIAnatomy", "deepgm_labels", "load_mni_anatomy"]


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
    template = load_template_anatomy()
    head = ndimage.binary_fill_holes(ndimage.binary_closing(template.t1 > 0.08, iterations=3))
    head = head | ndimage.binary_dilation(template.brain, iterations=6)
    return MNIAnatomy(template.affine, template.t1, template.gm, template.wm, template.brain,
                      head, template.deepgm)
