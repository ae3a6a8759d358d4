"""Classical dipole inversions: TKD, closed-form Tikhonov (CFL2) and nonlinear NDI.

All take the local field in ppm and return susceptibility in ppm, inside ``mask``.

References
----------
Shmueli K, de Zwart JA, van Gelderen P, et al. Magnetic susceptibility mapping of brain
tissue in vivo using MRI phase data. Magn Reson Med 2009;62:1510-1522 (TKD).
Bilgic B, Chatnuntawech I, Fan AP, et al. Fast image reconstruction with L2-regularization.
J Magn Reson Imaging 2014;40:181-191 (closed-form L2 with gradient regularisation).
Polak D, Chatnuntawech I, Yoon J, et al. Nonlinear dipole inversion (NDI) enables robust
quantitative susceptibility mapping (QSM). NMR Biomed 2020;33:e4271.
"""

from __future__ import annotations

import numpy as np

from qsmflow.constants import TKD_THRESHOLD

from .dipole import pad_with_dipole_kernel
from .fourier import irfftn, kspace_grid, pad_to, rfftn

# Chosen on tuning head 04 (pose -12/8/-5 degrees) by benchmarks/tune_classical.py.
# TKD_DEFAULT_THRESHOLD is the threshold of qsmflow.inversion (pipeline, qsmflow-invert);
# tkd() itself keeps constants.TKD_THRESHOLD, the threshold of NSIDL's TKD initialiser
# (v1 was trained with it, and tests/dl checks that one TKD serves both).
TKD_DEFAULT_THRESHOLD = 0.10
CFL2_LAMBDA = 3e-3
NDI_ITERATIONS = 60  # early stopping is NDI's regularisation (Polak 2020)


def _padded_problem(local_field_ppm, mask, voxel_size_mm, b0_direction, pad_vox):
    field = np.asarray(local_field_ppm, dtype=np.float64) * np.asarray(mask, bool)
    if pad_vox is None:
        pad_vox = [n // 4 for n in field.shape]
    field_p, inner, kernel = pad_with_dipole_kernel(field, voxel_size_mm, b0_direction, pad_vox)
    return field_p, inner, field_p.shape, kernel


def tkd_inverse_kernel(kernel, threshold: float = TKD_THRESHOLD) -> np.ndarray:
    """The truncated inverse of a dipole kernel: ``1 / D`` where ``|D| >= threshold``,
    ``sign(D) / threshold`` elsewhere (``+1 / threshold`` where ``D = 0``), and 0 at
    ``k = 0`` (the last three axes are k-space; leading axes, as a batch, are kept)."""
    kernel = np.asarray(kernel)
    safe = np.where(np.abs(kernel) < threshold, np.where(kernel < 0, -threshold, threshold),
                    kernel)
    inverse = 1.0 / safe
    inverse[..., 0, 0, 0] = 0.0
    return inverse


def tkd(local_field_ppm, mask, voxel_size_mm, b0_direction, *, threshold=TKD_THRESHOLD,
        pad_vox=None):
    """Truncated k-space division: ``chi = F^-1[F(field) / D]`` with ``|D| >= threshold``.

    Where ``|D| < threshold`` the inverse is set to ``sign(D) / threshold``
    (:func:`tkd_inverse_kernel`).
    """
    field_p, inner, shape, kernel = _padded_problem(
        local_field_ppm, mask, voxel_size_mm, b0_direction, pad_vox)
    chi = irfftn(rfftn(field_p) * tkd_inverse_kernel(kernel, threshold), shape)[inner]
    return chi * np.asarray(mask, bool)


def _gradient_energy_symbol(shape, voxel_size_mm) -> np.ndarray:
    """|F(grad)|^2 of forward differences, in units of the smallest voxel size."""
    vsz = np.asarray(voxel_size_mm, dtype=float)
    rel = vsz / vsz.min()
    freqs = kspace_grid(shape, np.ones(3), real=True)  # cycles per voxel
    return sum((2.0 - 2.0 * np.cos(2 * np.pi * f)) / h**2 for f, h in zip(freqs, rel, strict=True))


def cfl2(local_field_ppm, mask, voxel_size_mm, b0_direction, *, lam=CFL2_LAMBDA,
         pad_vox=None):
    """Closed-form L2 inversion with gradient regularisation.

    Minimises ``||D chi - field||^2 + lam ||grad chi||^2``, solved exactly in k-space:
    ``chi = F^-1[ D F(field) / (D^2 + lam |E|^2) ]``.
    """
    field_p, inner, shape, kernel = _padded_problem(
        local_field_ppm, mask, voxel_size_mm, b0_direction, pad_vox)
    energy = _gradient_energy_symbol(shape, voxel_size_mm)
    denominator = kernel**2 + lam * energy
    denominator[0, 0, 0] = 1.0
    chi = irfftn(rfftn(field_p) * kernel / denominator, shape)[inner]
    return chi * np.asarray(mask, bool)


def ndi(
    local_field_ppm,
    mask,
    voxel_size_mm,
    b0_direction,
    *,
    phase_scale_rad_per_ppm: float,
    weight=None,
    n_iterations: int = NDI_ITERATIONS,
    step: float = 2.0,
    lam: float = 1e-3,
    pad_vox=None,
    callback=None,
):
    """Nonlinear dipole inversion by gradient descent, regularised by early stopping.

    Minimises ``1/2 ||W (exp(i s D chi) - exp(i phi))||^2 + lam/2 ||chi||^2`` with
    ``phi = s * field`` and ``s = phase_scale_rad_per_ppm``. The gradient is
    ``s D^T [W^2 sin(s D chi - phi)] + lam chi``; the step is normalised by ``s^2``
    so that ``step`` means the same at every field strength and echo time.
    ``callback(iteration, chi)``, if given, sees every iterate (1-based; chi in ``mask``),
    so that one run gives the error at every number of iterations.
    """
    mask = np.asarray(mask, bool)
    field_p, inner, shape, kernel = _padded_problem(
        local_field_ppm, mask, voxel_size_mm, b0_direction, pad_vox)
    s = float(phase_scale_rad_per_ppm)
    w2 = np.ones(mask.shape) if weight is None else np.asarray(weight, dtype=np.float64) ** 2
    w2_p, _ = pad_to(w2 * mask, shape)
    mask_p, _ = pad_to(mask.astype(np.float64), shape)
    phase = s * field_p
    chi = np.zeros(shape)
    for iteration in range(1, n_iterations + 1):
        d_chi = irfftn(rfftn(chi) * kernel, shape)
        residual = w2_p * np.sin(s * d_chi - phase)
        gradient = irfftn(rfftn(residual) * kernel, shape) / s + lam * chi
        chi = (chi - step * gradient) * mask_p
        if callback is not None:
            callback(iteration, chi[inner] * mask)
    return chi[inner] * mask
