"""Input checks shared by every background removal method."""

from __future__ import annotations

import numpy as np


def check_field_and_mask(field, mask, voxel_size_mm):
    """``(field, mask, voxel_size_mm)`` as arrays, or a ``ValueError`` saying what is wrong."""
    field = np.asarray(field)
    mask = np.asarray(mask, dtype=bool)
    voxel_size_mm = np.asarray(voxel_size_mm, dtype=float)
    if field.ndim != 3 or field.shape != mask.shape:
        raise ValueError(f"field {field.shape} and mask {mask.shape} must be the same 3-D shape")
    if voxel_size_mm.shape != (3,) or np.any(voxel_size_mm <= 0):
        raise ValueError(f"voxel size must be three positive numbers, got {voxel_size_mm}")
    if not mask.any():
        raise ValueError("the mask is empty")
    return field, mask, voxel_size_mm

