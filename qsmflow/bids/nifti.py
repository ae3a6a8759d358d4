"""Opening NIfTI files with one clear message for every way they can be unreadable, and
the one way qsmflow writes them."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmflow.files import atomic_write

from .errors import QSMInputError


def open_nifti(path) -> nib.Nifti1Image:
    """The image of ``path`` with its header read; nibabel's many error types become one."""
    try:
        img = nib.load(str(path))
        img.header.get_data_shape()
    except Exception as err:  # nibabel raises several unrelated types
        raise QSMInputError(f"{path}: cannot be read as NIfTI ({err}). The file may be "
                            "truncated or corrupt; re-convert it from DICOM.") from err
    return img


def read_nifti_data(img: nib.Nifti1Image, path, *, scaled: bool = True,
                    dtype=np.float64) -> np.ndarray:
    """The voxel data of ``img`` (opened from ``path``): scaled by slope/intercept, or raw."""
    try:
        if scaled:  # float32 asked for: scaled in float32, never through a float64 copy
            native = np.float32 if np.dtype(dtype) == np.float32 else np.float64
            return np.asarray(img.get_fdata(dtype=native, caching="unchanged"), dtype=dtype)
        return np.asarray(img.dataobj)
    except Exception as err:
        raise QSMInputError(f"{path}: the image data cannot be read ({err}); the file is "
                            "probably truncated. Re-convert it from DICOM.") from err


def save_nifti(data, affine, path, *, dtype=np.float32, slope: float | None = None) -> str:
    """Write ``data`` on ``affine`` to ``path`` and return its absolute path.

    The sform and qform are both ``affine`` (code 1, scanner), the units mm and s. The
    file is written to a temporary name and renamed, so it appears whole or not at all;
    its folder is made if needed. With ``slope``, the values are stored as
    ``round(data / slope)`` in ``dtype`` (an integer type) with that slope in the header:
    exact to ``slope``, and small on disk.
    """
    data = np.asarray(data)
    if slope is not None:
        data = np.round(data / slope)
    img = nib.Nifti1Image(data.astype(dtype), affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    atomic_write(Path(path), lambda tmp: nib.save(img, tmp))
    return os.path.abspath(path)
