"""Header-level checks of a run's images, done before any computation starts."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np

from .discovery import GRERun
from .errors import QSMInputError
from .nifti import open_nifti, read_nifti_data
from .phase_units import phase_convention, polar_from_complex

AFFINE_TOLERANCE_MM = 1e-3
MAX_READER_THREADS = 4


def _load_header(path: str):
    img = open_nifti(path)
    return img, img.shape


def validate_run_images(run: GRERun) -> list[str]:
    """Check that every echo has the same 3-D grid and readable data, that the unit of
    the phase is known (``phase_units.phase_convention``), and that there is signal.

    Returns warnings (for example about non-finite voxels), raises ``QSMInputError``
    for anything that would make the results wrong.
    """
    warnings = list(run.warnings)
    reference = None
    for path in run.files:
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
    # The data checks read every file (most of the time goes to gzip, which releases the
    # GIL): a few threads, results in file order, so the first problem is always the same.
    with ThreadPoolExecutor(max_workers=_reader_threads(len(run.files))) as pool:
        for problem in pool.map(lambda path: _check_data(path, run), run.files):
            if problem:
                warnings.append(problem)
    for real, imag in zip(run.real_files, run.imag_files, strict=True):
        magnitude, _ = polar_from_complex(*(np.nan_to_num(read_nifti_data(open_nifti(p), p))
                                            for p in (real, imag)))
        _check_signal(magnitude, f"{real} and {imag}", "complex signal")
    return warnings


def _reader_threads(n_files: int) -> int:
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)
    return max(1, min(n_files, cpus, MAX_READER_THREADS))


def _check_data(path: str, run: GRERun) -> str | None:
    """Raise ``QSMInputError`` for data that would make the results wrong; return a
    warning about non-finite voxels, if any."""
    data = read_nifti_data(open_nifti(path), path, scaled=False)
    if path in run.phase_files:
        phase_convention(data, source=path, units=run.phase_units,
                         units_from=run.phase_units_from)
    if path in run.magnitude_files:
        _check_signal(data, path, "magnitude image")
    n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    return f"{path}: {n_bad} NaN/Inf voxels were set to zero" if n_bad else None


def _check_signal(magnitude: np.ndarray, source: str, what: str) -> None:
    finite = magnitude[np.isfinite(magnitude)]
    if finite.size == 0 or not np.any(finite != 0):
        raise QSMInputError(
            f"{source}: the {what} is zero everywhere, so this echo carries no signal "
            "(no brain mask or echo weighting can be made from it). Check the conversion of "
            "this echo from DICOM.")


def validate_same_grid(path, run: GRERun, what: str) -> None:
    """Check that a user-supplied native-space image (a brain mask, ROI labels) is 3-D and
    on the grid of ``run``'s echoes."""
    img, shape = _load_header(str(path))
    reference = run.files[0]
    ref = nib.load(reference)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] != 1) or \
            shape[:3] != ref.shape[:3] or \
            not np.allclose(img.affine, ref.affine, atol=AFFINE_TOLERANCE_MM):
        raise QSMInputError(
            f"{path}: this {what} (shape {shape}) is not on the grid of {run.label}'s echoes "
            f"(shape {ref.shape[:3]}, {reference}). It must be in the scan's native space: "
            "resample it onto the first echo's grid (nearest neighbour) or leave it out.")
