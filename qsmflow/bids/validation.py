"""Header-level checks of a run's images, done before any computation starts."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from .discovery import GRERun
from .errors import QSMInputError
from .phase_units import phase_to_radians

AFFINE_TOLERANCE_MM = 1e-3


def _load_header(path: str):
    try:
        img = nib.load(path)
        shape = img.shape
    except Exception as err:  # nibabel raises several unrelated types
        raise QSMInputError(f"{path}: cannot be read as NIfTI ({err}). The file may be "
                            "truncated or corrupt; re-convert it from DICOM.") from err
    return img, shape


def validate_run_images(run: GRERun) -> list[str]:
    """Check that every echo has the same 3-D grid and readable data.

    Returns warnings (for example about non-finite voxels), raises ``QSMInputError``
    for anything that would make the results wrong.
    """
    warnings = list(run.warnings)
    reference = None
    for path in run.magnitude_files + run.phase_files:
        img, shape = _load_header(path)
        if len(shape) == 4 and shape[3] > 1:
            raise QSMInputError(
                f"{path}: a 4-D image with {shape[3]} volumes. BIDS stores one echo per file "
                "(echo-1, echo-2, ...); split it, e.g. with nibabel or fslsplit, and write "
                "one sidecar per echo with its EchoTime.")
        if len(shape) not in (3, 4) or min(shape[:3]) < 4:
            raise QSMInputError(f"{path}: shape {shape} is not a 3-D volume.")
        affine = img.affine
        if reference is None:
            reference = (path, shape[:3], affine)
        else:
            ref_path, ref_shape, ref_affine = reference
            if shape[:3] != ref_shape:
                raise QSMInputError(f"{path}: shape {shape[:3]} differs from {ref_shape} of "
                                    f"{ref_path}. All echoes and parts must share one grid.")
            if not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE_MM):
                raise QSMInputError(
                    f"{path}: its affine differs from that of {ref_path}. All echoes must "
                    "share one grid; the files may come from different acquisitions.")
        try:
            data = np.asarray(img.dataobj)
        except Exception as err:
            raise QSMInputError(f"{path}: the image data cannot be read ({err}); the file is "
                                "probably truncated. Re-convert it from DICOM.") from err
        n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if n_bad:
            warnings.append(f"{path}: {n_bad} NaN/Inf voxels were set to zero")
        if path in run.phase_files:
            phase_to_radians(np.where(np.isfinite(data), data, 0), source=path,
                             is_integer_type=np.issubdtype(img.get_data_dtype(), np.integer))
        if path in run.magnitude_files and path == run.magnitude_files[0]:
            finite = data[np.isfinite(data)]
            if finite.size == 0 or not np.any(finite != 0):
                raise QSMInputError(f"{path}: the magnitude image is zero everywhere, so no "
                                    "brain mask can be made. Check the conversion of this echo.")
    return warnings
