"""Opening NIfTI files with one clear message for every way they can be unreadable."""

from __future__ import annotations

import nibabel as nib
import numpy as np

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
        if scaled:
            return np.asarray(img.get_fdata(dtype=np.float64), dtype=dtype)
        return np.asarray(img.dataobj)
    except Exception as err:
        raise QSMInputError(f"{path}: the image data cannot be read ({err}); the file is "
                            "probably truncated. Re-convert it from DICOM.") from err
