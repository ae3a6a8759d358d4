"""The dipole convolution as an immutable PyTorch operator with its adjoint."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qsmflow.algorithms.dipole import dipole_kernel_rfft
from qsmflow.algorithms.fourier import fast_padded_shape
from qsmflow.algorithms.inversion import tkd_inverse_kernel
from qsmflow.constants import TKD_THRESHOLD


class DipoleOperator(nn.Module):
    """``A(chi) = crop(F^-1[D . F(pad(chi))])``: the unit dipole convolution in ppm.

    Zero padding by ``pad_vox`` on each side keeps the FFT's circular convolution from
    wrapping sources around the grid. Because ``D`` is real and even and crop is the
    adjoint of zero padding, ``A`` is self-adjoint: ``A_adjoint`` is ``A``.

    The kernel is a buffer, never a parameter: the physics is not trained.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape (X, Y, Z) of the volumes the operator acts on.
    voxel_size_mm : sequence of float
    b0_direction : sequence of float
        B0 direction in voxel coordinates.
    pad_vox : sequence of int, optional
        Default: a quarter of each dimension.
    """

    def __init__(self, shape, voxel_size_mm, b0_direction, *, pad_vox=None):
        super().__init__()
        shape = tuple(int(n) for n in shape)
        if pad_vox is None:
            pad_vox = [n // 4 for n in shape]
        self.shape = shape
        self.padded_shape = fast_padded_shape(shape, pad_vox)
        self.before = tuple((p - n) // 2 for n, p in zip(shape, self.padded_shape, strict=True))
        voxel_size_mm = np.asarray(voxel_size_mm, dtype=float)
        b0_direction = np.asarray(b0_direction, dtype=float)
        if voxel_size_mm.ndim == 2 or b0_direction.ndim == 2:
            # One kernel per batch item: (B, 1, Kx, Ky, Kz).
            n = max(len(np.atleast_2d(voxel_size_mm)), len(np.atleast_2d(b0_direction)))
            vsz = np.broadcast_to(np.atleast_2d(voxel_size_mm), (n, 3))
            bdir = np.broadcast_to(np.atleast_2d(b0_direction), (n, 3))
            kernel = np.stack([dipole_kernel_rfft(self.padded_shape, v, b)
                               for v, b in zip(vsz, bdir, strict=True)])[:, None]
        else:
            kernel = dipole_kernel_rfft(self.padded_shape, voxel_size_mm, b0_direction)
        self.register_buffer("kernel", torch.from_numpy(kernel.astype(np.float32)))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, p, b in reversed(list(zip(self.shape, self.padded_shape, self.before, strict=True))):
            pads += [b, p - n - b]
        return nn.functional.pad(x, pads)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        (bx, by, bz), (nx, ny, nz) = self.before, self.shape
        return x[..., bx:bx + nx, by:by + ny, bz:bz + nz]

    def _apply_symbol(self, x: torch.Tensor, symbol: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfftn(self._pad(x), s=self.padded_shape, dim=(-3, -2, -1))
        return self._crop(torch.fft.irfftn(spectrum * symbol, s=self.padded_shape,
                                           dim=(-3, -2, -1)))

    def A(self, chi_ppm: torch.Tensor) -> torch.Tensor:  # noqa: N802 (operator notation)
        return self._apply_symbol(chi_ppm, self.kernel)

    def A_adjoint(self, field_ppm: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self._apply_symbol(field_ppm, self.kernel)

    def forward(self, chi_ppm: torch.Tensor) -> torch.Tensor:
        return self.A(chi_ppm)

    def tkd(self, field_ppm: torch.Tensor, threshold: float = TKD_THRESHOLD) -> torch.Tensor:
        """Truncated k-space division with the same kernel and padding: the inverse
        kernel is :func:`qsmflow.algorithms.inversion.tkd_inverse_kernel` of this one."""
        inverse = tkd_inverse_kernel(self.kernel.cpu().numpy(), threshold)
        return self._apply_symbol(field_ppm, torch.from_numpy(inverse).to(self.kernel))


def nonlinear_data_gradient(operator: DipoleOperator, chi_ppm, phase_rad, weight_sq,
                            phase_scale_rad_per_ppm):
    """Gradient of ``f(chi) = 1/2 ||W (exp(i s A chi) - exp(i phi))||^2`` in ppm.

    ``grad f = s A^T [W^2 sin(s A chi - phi)]``. ``phase_scale_rad_per_ppm`` (``s``) may be
    a float or a tensor broadcastable to the batch, shape (B, 1, 1, 1, 1).
    """
    s = phase_scale_rad_per_ppm
    residual = weight_sq * torch.sin(s * operator.A(chi_ppm) - phase_rad)
    return s * operator.A_adjoint(residual)


def data_consistency_step(operator: DipoleOperator, chi_ppm, mask, phase_rad, weight_sq,
                          phase_scale_rad_per_ppm, step_size):
    """One gradient step of the nonlinear data term alone, kept in the mask (NDI's step):
    ``chi <- mask (chi - step_size grad f(chi) / s^2)``."""
    s = phase_scale_rad_per_ppm
    gradient = nonlinear_data_gradient(operator, chi_ppm, phase_rad, weight_sq, s) / (s * s)
    return (chi_ppm - step_size * gradient) * mask


def nonlinear_data_loss(operator, chi_ppm, phase_rad, weight_sq, phase_scale_rad_per_ppm):
    """``1/2 ||W (exp(i s A chi) - exp(i phi))||^2`` = ``sum W^2 (1 - cos(s A chi - phi))``."""
    s = phase_scale_rad_per_ppm
    return torch.sum(weight_sq * (1.0 - torch.cos(s * operator.A(chi_ppm) - phase_rad)))
