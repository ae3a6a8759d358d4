"""NIfTI loading and saving shared by the interfaces."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmflow.bids.errors import QSMInputError


def load_image(path) -> nib.Nifti1Image:
    """Load a NIfTI image, turning nibabel's many errors into one clear message."""
    try:
        img = nib.load(str(path))
        img.header.get_data_shape()
        return img
    except Exception as err:  # nibabel raises several unrelated types
        raise QSMInputError(f"{path}: cannot be read as NIfTI ({err}). The file may be "
                            "truncated or corrupt; re-export it from the scanner data.") from err


def load_data(path, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Data (scaled by the header's slope/intercept) and affine of a NIfTI file."""
    img = load_image(path)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float64), dtype=dtype)
    except Exception as err:
        raise QSMInputError(f"{path}: the image data cannot be read ({err}); the file is "
                            "probably truncated.") from err
    return data, img.affine


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
