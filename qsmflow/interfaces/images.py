"""NIfTI loading and saving shared by the interfaces."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmflow.bids.nifti import open_nifti, read_nifti_data


def load_image(path) -> nib.Nifti1Image:
    """Load a NIfTI image, turning nibabel's many errors into one clear message."""
    return open_nifti(path)


def load_data(path, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Data (scaled by the header's slope/intercept) and affine of a NIfTI file."""
    img = open_nifti(path)
    return read_nifti_data(img, path, dtype=dtype), img.affine


def save_like(data, affine, path, *, dtype=np.float32) -> str:
    """Save ``data`` with ``affine`` (sform and qform set) and return the absolute path."""
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return os.path.abspath(path)


def output_path(name: str) -> str:
    """Path in the node's working directory (Nipype runs interfaces with cwd there)."""
    return str(Path.cwd() / name)
