"""The phantom's anatomy: the default atlas's template and labels, plus a head mask.

The brain, tissue maps and deep gray labels (AAL3 + the SUIT dentate nuclei) are those of
``qsmflow.atlases.anatomy``; this module adds only what a phantom needs beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from scipy import ndimage

from qsmflow.atlases.anatomy import (
    DeepGMLabel,
    TemplateAnatomy,
    deepgm_labels,
    load_template_anatomy,
)

__all__ = ["DeepGMLabel", "MNIAnatomy", "deepgm_labels", "load_mni_anatomy"]


@dataclass(frozen=True)
class MNIAnatomy(TemplateAnatomy):
    """The atlas's template anatomy plus the head it sits in (1 mm nilearn MNI152 grid)."""

    head: np.ndarray | None = None  # bool


@lru_cache(maxsize=1)
def load_mni_anatomy() -> MNIAnatomy:
    template = load_template_anatomy()
    head = ndimage.binary_fill_holes(ndimage.binary_closing(template.t1 > 0.08, iterations=3))
    head = head | ndimage.binary_dilation(template.brain, iterations=6)
    return MNIAnatomy(**{f.name: getattr(template, f.name) for f in fields(template)},
                      head=head)
