"""NIfTI loading and saving shared by the interfaces.

``save_like`` is :func:`qsmflow.bids.nifti.save_nifti`, the one NIfTI writer.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from qsmflow.bids.nifti import open_nifti, read_nifti_data
from qsmflow.bids.nifti import save_nifti as save_like

__all__ = ["load_data", "load_image", "load_mask", "output_path", "save_like",
           "work_image_path"]


def load_image(path) -> nib.Nifti1Image:
    """Load a NIfTI image, turning nibabel's many errors into one clear message."""
    return open_nifti(path)


def load_data(path, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Data (scaled by the header's slope/intercept) and affine of a NIfTI file."""
    img = open_nifti(path)
    return read_nifti_data(img, path, dtype=dtype), img.affine


def load_mask(path) -> np.ndarray:
    """A mask file's voxels as bool: above 0.5, whatever its dtype (uint8, float)."""
    return load_data(path)[0] > 0.5


def output_path(name: str) -> str:
    """Path in the node's working directory (Nipype runs interfaces with cwd there)."""
    return str(Path.cwd() / name)


def work_image_path(stem: str) -> str:
    """Path of an intermediate NIfTI image in the node's working directory: ``stem.nii``.

    Uncompressed, because gzip at nibabel's level costs about 1.3 s of CPU per 1 mm volume
    written (6.5 s for a 5-echo 4-D stack) and the next node pays again to read it; the
    derivatives sink compresses what it publishes.
    """
    return output_path(f"{stem}.nii")
