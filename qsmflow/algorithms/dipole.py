"""The magnetic dipole kernel and the B0 direction in voxel coordinates.

Convention used throughout qsmflow: the field perturbation (in ppm of B0) is
``field_ppm = D * chi_ppm`` with the Lorentz-corrected unit dipole kernel
``D(k) = 1/3 - (k . b0)^2 / |k|^2`` and ``D(0) = 0``. A positive (paramagnetic)
susceptibility gives a positive field along B0 and hence a positive frequency.

References
----------
Salomir R, de Senneville BD, Moonen CT. A fast calculation method for magnetic field
inhomogeneity due to an arbitrary distribution of bulk susceptibility.
Concepts Magn Reson B 2003;19B:26-34.
Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation of
field inhomogeneity due to spatial variation of magnetic susceptibility.
Concepts Magn Reson B 2005;25B:65-78.
"""

from __future__ import annotations

import numpy as np

from .fourier import fast_padded_shape, irfftn, kspace_grid, pad_to, rfftn

SCANNER_B0_AXIS = np.array([0.0, 0.0, 1.0])  # B0 is along the scanner's z (world) axis


def b0_direction_from_affine(affine: np.ndarray) -> np.ndarray:
    """Unit B0 direction in voxel coordinates of an image with this voxel-to-world affine.

    The world frame of a NIfTI from the scanner is the scanner frame, where B0 is
    along +z. The rotation part of the affine is taken by polar decomposition, so
    voxel scaling and small shears do not bias the direction.
    """
    linear = np.asarray(affine, dtype=float)[:3, :3]
    u, _, vt = np.linalg.svd(linear)
    rotation = u @ vt  # nearest orthogonal matrix: voxel axes -> world axes
    direction = rotation.T @ SCANNER_B0_AXIS
    return direction / np.linalg.norm(direction)


def voxel_size_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm: the lengths of the affine's column vectors."""
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def dipole_kernel_rfft(shape, voxel_size_mm, b0_direction) -> np.ndarray:
    """Unit dipole kernel on the rFFT grid of ``shape`` (last axis halved).

    Parameters
    ----------
    shape : tuple of int
        Grid (usually padded) on which the convolution is done.
    voxel_size_mm : sequence of float
        Voxel size, so that anisotropic voxels give the right kernel.
    b0_direction : sequence of float
        B0 direction in voxel coordinates (see :func:`b0_direction_from_affine`).
    """
    b = np.asarray(b0_direction, dtype=float)
    b = b / np.linalg.norm(b)
    kx, ky, kz = kspace_grid(shape, voxel_size_mm, real=True)
    k_dot_b = kx * b[0] + ky * b[1] + kz * b[2]
    k2 = kx**2 + ky**2 + kz**2
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = 1.0 / 3.0 - k_dot_b**2 / k2
    kernel[0, 0, 0] = 0.0
    return kernel


def forward_field_ppm(chi_ppm, voxel_size_mm, b0_direction, *, pad_vox=None) -> np.ndarray:
    """Field perturbation in ppm produced by the susceptibility distribution ``chi_ppm``.

    The volume is zero-padded (by half its size unless ``pad_vox`` is given) so that
    the circular convolution of the FFT does not wrap sources around the edges.
    """
    chi_ppm = np.asarray(chi_ppm, dtype=np.float64)
    if pad_vox is None:
        pad_vox = [n // 2 for n in chi_ppm.shape]
    padded, inner, kernel = pad_with_dipole_kernel(chi_ppm, voxel_size_mm, b0_direction, pad_vox)
    return irfftn(rfftn(padded) * kernel, padded.shape)[inner]


def pad_with_dipole_kernel(volume, voxel_size_mm, b0_direction, pad_vox):
    """``volume`` zero-padded by ``pad_vox`` per side (then to a fast FFT size), the slices
    of the original inside the padded grid, and the unit dipole kernel on that grid."""
    padded_shape = fast_padded_shape(np.shape(volume), pad_vox)
    padded, inner = pad_to(volume, padded_shape)
    return padded, inner, dipole_kernel_rfft(padded_shape, voxel_size_mm, b0_direction)
