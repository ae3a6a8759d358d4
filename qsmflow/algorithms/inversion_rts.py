"""Rapid two-step dipole inversion (RTS) with a sparsity prior.

Step 1 (well-conditioned part): a few LSMR iterations on ``D chi = field`` from zero;
early stopping keeps the small-``|D|`` frequencies from blowing up. The result is kept
inside the mask. Step 2 (ill-conditioned part): the k-space of step 1 is kept where
``|D| > delta`` and the rest is filled in by anisotropic total variation,
``min mu/2 ||M F(chi - chi_1)||^2 + ||grad chi||_1`` with ``M = [|D| > delta]``, by ADMM
with the penalty ``rho`` raised (times ``gamma``) whenever the primal residual falls by
less than ``tau`` (as QSM.jl's ``rts``). Anisotropic as in the paper.

RTS rather than MEDI here: it needs only the local field and the mask (no magnitude
edge mask, so the stage commands and the pipeline run it alike), and it is linear and
fast (tens of FFTs, no inner conjugate-gradient loop). Its data term is unweighted: the
data weight W is not used.

References
----------
Kames C, Wiggermann V, Rauscher A. Rapid two-step dipole inversion for susceptibility
mapping with sparsity priors. NeuroImage 2018;167:276-283.
Fong DC-L, Saunders M. LSMR: an iterative algorithm for sparse least-squares problems.
SIAM J Sci Comput 2011;33:2950-2971.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsmr

from .fourier import irfftn, rfftn
from .inversion import _gradient_energy_symbol
from .inversion_tv import cropped_padded, gradient, gradient_adjoint, relative_spacing, shrink

# RTS_MU and RTS_LSMR_ITERATIONS: chosen on tuning head 04 (pose -12/8/-5 degrees) by
# benchmarks/tune_classical.py; the others are Kames 2018's and QSM.jl's.
RTS_DELTA = 0.15  # |D| below which k-space is ill-conditioned (Kames 2018)
RTS_MU = 1e3  # weight of the well-conditioned data term against TV (ppm field)
RTS_RHO = 10.0
RTS_LSMR_ITERATIONS = 20
RTS_MAX_ITERATIONS = 20
RTS_TOLERANCE = 1e-2
RTS_TAU, RTS_GAMMA = 0.7, 5.0  # raise rho by gamma if the residual falls by less than tau


def rts(local_field_ppm, mask, voxel_size_mm, b0_direction, *, delta: float = RTS_DELTA,
        mu: float = RTS_MU, rho: float = RTS_RHO, lsmr_iterations: int = RTS_LSMR_ITERATIONS,
        max_iterations: int = RTS_MAX_ITERATIONS, tol: float = RTS_TOLERANCE,
        tau: float = RTS_TAU, gamma: float = RTS_GAMMA, pad_vox=None,
        history: list | None = None) -> np.ndarray:
    """Susceptibility (ppm) from the local field (ppm) by rapid two-step inversion.

    Parameters
    ----------
    local_field_ppm, mask : ndarray
        Local field (ppm) and the mask where it is valid; chi is returned inside ``mask``.
    voxel_size_mm, b0_direction : sequence of float
        Voxel size and the B0 direction in voxel coordinates.
    delta : float
        Threshold on ``|D|`` of the well-conditioned k-space.
    mu, rho : float
        Data weight against TV, and the initial ADMM penalty.
    history : list, optional
        If given, receives per ADMM iteration a dict with the primal residual and rho.

    Returns
    -------
    ndarray
        chi (ppm), 0 outside ``mask``.
    """
    mask = np.asarray(mask, bool)
    field_p, box, inner, kernel = cropped_padded(local_field_ppm, mask, voxel_size_mm,
                                                 b0_direction, pad_vox)
    shape = field_p.shape
    mask_p = np.zeros(shape, bool)
    mask_p[inner] = mask[box]

    # Step 1: early-stopped LSMR on the dipole convolution (self-adjoint, real).
    def convolve(x):
        return irfftn(kernel * rfftn(np.reshape(x, shape)), shape).ravel()

    # in float64: LSMR's own estimates of the condition number overflow in float32
    operator = LinearOperator((field_p.size,) * 2, matvec=convolve, rmatvec=convolve,
                              dtype=np.float64)
    chi = lsmr(operator, field_p.ravel().astype(np.float64), atol=0.0, btol=0.0,
               maxiter=lsmr_iterations)[0].reshape(shape).astype(field_p.dtype) * mask_p

    # Step 2: TV on the ill-conditioned cone, the well-conditioned k-space held to step 1.
    spacing = relative_spacing(voxel_size_mm)
    lap = _gradient_energy_symbol(shape, voxel_size_mm).astype(field_p.dtype)
    well = np.where(np.abs(kernel) > delta, kernel.dtype.type(mu), kernel.dtype.type(0))
    data_rhs = well * rfftn(chi)
    u = np.zeros((3, *shape), field_p.dtype)
    rho = float(rho)
    residual = np.inf
    for _ in range(max_iterations):
        # The z-update comes first: from z = grad(chi_1), u = 0 the chi-update gives chi_1.
        g = gradient(chi, spacing)
        z = shrink(g + u, 1.0 / rho, isotropic=False)
        u += g - z
        previous_residual, residual = residual, float(np.linalg.norm(g - z))
        if history is not None:
            history.append({"primal_residual": residual, "rho": rho})
        if residual > tau * previous_residual:
            rho *= gamma
            u /= gamma  # the scaled dual variable follows rho
        previous = chi
        denominator = well + rho * lap
        denominator[denominator == 0] = 1.0  # k = 0 only: the numerator is 0 there too
        chi = irfftn((data_rhs + rho * rfftn(gradient_adjoint(z - u, spacing))) / denominator,
                     shape)
        if np.linalg.norm(chi - previous) < tol * np.linalg.norm(chi):
            break
    out = np.zeros(mask.shape)
    out[box] = chi[inner] * mask[box]
    return out
