"""Total-variation regularised dipole inversion solved by ADMM.

Minimises ``1/2 ||W (D chi - field)||^2 + lam TV(chi)`` with the isotropic total variation
``TV(chi) = sum_r |grad chi(r)|_2`` (forward differences, periodic on the padded grid, in
units of the smallest voxel size as :func:`qsmflow.algorithms.inversion.cfl2`). Isotropic
rather than QSM.jl's anisotropic TV: it does not depend on how the voxel axes lie, and
oblique acquisitions are common.

Without ``weight`` the data term covers the padded grid (the field is zero outside the
mask), and the chi-update of every iteration is one division in k-space (Bilgic 2014,
QSM.jl ``tv``). With ``weight`` the data term is split off as ``y = D chi`` (Milovic 2018,
FANSI's linear weighted solver): the chi-update stays a k-space division and the
y-update is voxel-wise.

References
----------
Bilgic B, Fan AP, Polimeni JR, et al. Fast quantitative susceptibility mapping with
L1-regularization and automatic parameter selection. Magn Reson Med 2014;72:1444-1459.
Milovic C, Bilgic B, Zhao B, Acosta-Cabronero J, Tejos C. Fast nonlinear susceptibility
inversion with variational regularization. Magn Reson Med 2018;80:814-821 (FANSI).
Boyd S, Parikh N, Chu E, Peleato B, Eckstein J. Distributed optimization and statistical
learning via the alternating direction method of multipliers. Found Trends Mach Learn
2011;3:1-122 (stopping rule and residuals).
"""

from __future__ import annotations

import numpy as np

from .dipole import dipole_kernel_rfft
from .fourier import bounding_box, fast_padded_shape, irfftn, pad_to, rfftn
from .inversion import _gradient_energy_symbol

# TV_LAMBDA: chosen on tuning head 04 (pose -12/8/-5 degrees) by benchmarks/tune_classical.py.
TV_LAMBDA = 1e-4
TV_RHO_PER_LAMBDA = 100.0  # rho = 100 lam, as QSM.jl
TV_MU = 1.0  # penalty of the split data term (weighted problem only)
TV_MAX_ITERATIONS = 250
TV_TOLERANCE = 1e-3  # stop when ||chi - chi_prev|| < tol ||chi||


def relative_spacing(voxel_size_mm) -> tuple[float, ...]:
    """Voxel size over the smallest one, as Python floats (they keep float32 arrays float32)."""
    vsz = np.asarray(voxel_size_mm, dtype=float)
    return tuple(float(h) for h in vsz / vsz.min())


def gradient(x, spacing) -> np.ndarray:
    """Forward differences along each axis, periodic: shape ``(3, *x.shape)``."""
    return np.stack([(np.roll(x, -1, axis) - x) / h for axis, h in enumerate(spacing)])


def gradient_adjoint(g, spacing) -> np.ndarray:
    """The adjoint of :func:`gradient` (minus the backward-difference divergence)."""
    return sum((np.roll(g[axis], 1, axis) - g[axis]) / h for axis, h in enumerate(spacing))


def shrink(v, threshold, *, isotropic: bool):
    """Proximal map of ``threshold * |.|``: per voxel on the gradient vector (isotropic),
    or per component (anisotropic)."""
    if isotropic:
        norm = np.sqrt((v**2).sum(0))
        return v * (np.maximum(norm - threshold, 0.0) / np.maximum(norm, 1e-30))
    return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)


def tv_norm(x, spacing, *, isotropic: bool = True) -> float:
    g = gradient(x, spacing)
    return float(np.sqrt((g**2).sum(0)).sum() if isotropic else np.abs(g).sum())


def cropped_padded(local_field_ppm, mask, voxel_size_mm, b0_direction, pad_vox,
                   dtype=np.float32):
    """The field on the mask's bounding box, zero-padded (``n // 4`` per side by default)
    to fast FFT sizes; the slices of the box in the full and the padded grid; the kernel.
    float32 by default: it halves memory and FFT time, far below the errors of QSM."""
    mask = np.asarray(mask, bool)
    box = bounding_box(mask)
    field = np.asarray(local_field_ppm, np.float64)[box] * mask[box]
    if pad_vox is None:
        pad_vox = [n // 4 for n in field.shape]
    shape = fast_padded_shape(field.shape, pad_vox)
    field_p, inner = pad_to(field.astype(dtype), shape)
    return field_p, box, inner, dipole_kernel_rfft(shape, voxel_size_mm,
                                                   b0_direction).astype(dtype)


def tv(local_field_ppm, mask, voxel_size_mm, b0_direction, *, lam: float = TV_LAMBDA,
       rho: float | None = None, weight=None, mu: float = TV_MU,
       max_iterations: int = TV_MAX_ITERATIONS, tol: float = TV_TOLERANCE, pad_vox=None,
       history: list | None = None, dtype=np.float32) -> np.ndarray:
    """Susceptibility (ppm) by TV-regularised inversion of the local field (ppm), by ADMM.

    Parameters
    ----------
    local_field_ppm, mask : ndarray
        Local field (ppm) and the mask where it is valid; chi is returned inside ``mask``.
    voxel_size_mm, b0_direction : sequence of float
        Voxel size and the B0 direction in voxel coordinates.
    lam : float
        TV weight (the field in ppm, the gradient per smallest voxel).
    rho : float, optional
        ADMM penalty of the gradient split (default ``100 lam``).
    weight : ndarray, optional
        Data weight W (for example the echo fit's, in [0, 1]); inside the mask only.
    mu : float
        ADMM penalty of the data split (used with ``weight`` only).
    history : list, optional
        If given, receives per iteration a dict with the primal residual
        ``||grad chi - z||`` and the objective.
    dtype : numpy dtype
        Working precision (float32; float64 to check convergence to tight tolerances).

    Returns
    -------
    ndarray
        chi (ppm), 0 outside ``mask``.
    """
    mask = np.asarray(mask, bool)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    lam, mu = float(lam), float(mu)
    rho = TV_RHO_PER_LAMBDA * lam if rho is None else float(rho)
    if rho <= 0:
        raise ValueError("rho must be > 0 (pass rho explicitly when lam = 0)")
    field_p, box, inner, kernel = cropped_padded(local_field_ppm, mask, voxel_size_mm,
                                                 b0_direction, pad_vox, dtype)
    shape = field_p.shape
    spacing = relative_spacing(voxel_size_mm)
    lap = _gradient_energy_symbol(shape, voxel_size_mm).astype(dtype)  # of grad^T grad
    weighted = weight is not None
    if weighted:
        w2, _ = pad_to((np.asarray(weight, dtype)[box] * mask[box]) ** 2, shape)
        denominator = mu * kernel**2 + rho * lap
        y = np.zeros(shape, dtype)
        u_data = np.zeros(shape, dtype)
    else:
        denominator = kernel**2 + rho * lap
        data_rhs = kernel * rfftn(field_p)  # D^T F(field): fixed
    denominator[0, 0, 0] = 1.0  # k = 0: both terms vanish, the mean is set to 0
    chi = np.zeros(shape, dtype)
    z = np.zeros((3, *shape), dtype)
    u = np.zeros((3, *shape), dtype)
    for _ in range(max_iterations):
        previous = chi
        rhs = rho * rfftn(gradient_adjoint(z - u, spacing))
        rhs += mu * kernel * rfftn(y - u_data) if weighted else data_rhs
        rhs[0, 0, 0] = 0.0
        chi = irfftn(rhs / denominator, shape)
        g = gradient(chi, spacing)
        z = shrink(g + u, lam / rho, isotropic=True)
        u += g - z
        if weighted:
            d_chi = irfftn(kernel * rfftn(chi), shape)
            y = (w2 * field_p + mu * (d_chi + u_data)) / (w2 + mu)
            u_data += d_chi - y
        if history is not None:
            d_chi = d_chi if weighted else irfftn(kernel * rfftn(chi), shape)
            misfit = (d_chi - field_p) * (np.sqrt(w2) if weighted else 1.0)
            history.append({"primal_residual": float(np.linalg.norm(g - z)),
                            "objective": 0.5 * float((misfit**2).sum())
                            + lam * float(np.sqrt((g**2).sum(0)).sum())})
        if np.linalg.norm(chi - previous) < tol * np.linalg.norm(chi):
            break
    out = np.zeros(mask.shape)
    out[box] = chi[inner] * mask[box]
    return out
