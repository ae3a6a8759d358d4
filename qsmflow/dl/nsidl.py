"""NSIDL: nonlinear susceptibility inversion with a learned proximal operator.

The network unrolls ``K`` steps of proximal gradient descent on the nonlinear
dipole data term ``f(chi) = 1/2 ||W (exp(i s D chi) - exp(i phi))||^2``::

    z_k     = chi_k - alpha_k * grad f(chi_k) / s^2
    chi_k+1 = mask * P_theta(z_k, field)

``P_theta`` is a small residual 3-D U-Net, shared by all iterations in v1 (weight
sharing as in LPCNN: fewer parameters for a CPU training budget and a prior that does
not depend on the iteration) or one per iteration in v2 (``shared_prox=False``: K times
the parameters at the same inference cost, as in MoDL's and NeXtQSM's unshared
variants), and ``alpha_k`` are learned positive step sizes, one per
iteration (as in NeXtQSM's variational network). Dividing the gradient by ``s^2``
makes ``alpha`` independent of field strength and echo time: for small residuals
``grad f / s^2 ~ D^T W^2 (D chi - field)`` in ppm. ``chi_0`` is TKD.

This file holds the model only: no training loop, no file I/O.

References
----------
Guo H, Zhang Z. Nonlinear susceptibility inversion deep learning model for robust
quantitative susceptibility mapping. Proc Intl Soc Mag Reson Med (ISMRM) 2024, abstract
5006 (NSIDL; journal version 2025: "Nonlinear inversion model-driven deep learning method
for magnetic resonance imaging (MRI) quantitative susceptibility mapping imaging"). The
papers publish no code or weights; architecture choices are ours, listed in the model card.
Lai KW, Aggarwal M, van Zijl P, Li X, Sulam J. Learned proximal networks for
quantitative susceptibility mapping. MICCAI 2020 (LPCNN).
Polak D, et al. Nonlinear dipole inversion (NDI). NMR Biomed 2020;33:e4271.
Cognolato F, et al. NeXtQSM. Med Image Anal 2023;84:102700.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .operators import DipoleOperator, data_consistency_step, nonlinear_data_gradient
from .tiling import apply_in_tiles

CHI_SCALE_PPM = 0.1  # typical tissue susceptibility: network inputs are divided by it
# Step of the final data-consistency steps, normalised by s^2: NDI's default step
# (qsmflow.algorithms.inversion.ndi), stable for the dipole kernel's largest value 2/3.
DC_STEP_SIZE = 2.0


@dataclass(frozen=True)
class NSIDLConfig:
    n_iterations: int = 5
    width: int = 12
    initial_step: float = 1.0
    # v1 files carry no such field and load with the default: one shared U-Net.
    shared_prox: bool = True
    # The proximal networks also see the field's noise sd (ppm) per voxel, so that they
    # can regularise noisy data strongly and clean data little (v1/v2 files: False).
    noise_input: bool = False

    def to_dict(self):
        return asdict(self)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class ProximalUNet(nn.Module):
    """Two-level residual 3-D U-Net: input (z, field[, noise sd]) -> correction to z.

    Two downsamplings give a receptive field of about 40 voxels, wide enough to see the
    streaks that the ill-conditioned cone of the dipole kernel leaves, at a cost
    dominated by the three full-resolution convolutions.
    """

    def __init__(self, width: int = 12, in_channels: int = 2):
        super().__init__()
        w = width
        self.enc0 = _conv_block(in_channels, w)
        self.enc1 = nn.Sequential(_conv_block(w, 2 * w), _conv_block(2 * w, 2 * w))
        self.enc2 = nn.Sequential(_conv_block(2 * w, 4 * w), _conv_block(4 * w, 4 * w))
        self.up2 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec1 = _conv_block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec0 = _conv_block(2 * w, w)
        self.out = nn.Conv3d(w, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start as the identity map
        nn.init.zeros_(self.out.bias)
        # Channels-last (NDHWC) weights and activations: oneDNN's 3-D convolutions on CPU
        # take about half the time in this layout (issue 15: 16 -> 9 s for one pass on a
        # 180 x 212 x 184 crop, 2 threads). Loaded state dicts are copied into it.
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, z: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
        shape = z.shape[-3:]
        pads = []
        for n in reversed(shape):
            pads += [0, (-n) % 4]
        x = nn.functional.pad(torch.cat([z, *conditions], dim=1), pads).contiguous(
            memory_format=torch.channels_last_3d)
        e0 = self.enc0(x)
        del x
        e1 = self.enc1(nn.functional.avg_pool3d(e0, 2))
        e2 = self.enc2(nn.functional.avg_pool3d(e1, 2))
        d1 = self.dec1(torch.cat([self.up2(e2), e1], dim=1))
        del e1, e2
        up = self.up1(d1)
        del d1
        # dec0 on [up, e0] without building their concatenation: the full-resolution
        # tensors dominate inference memory (issue 15), and the convolution of a
        # concatenation is the sum of the convolutions of its parts.
        conv = self.dec0[0]
        width = up.shape[1]
        d0 = nn.functional.conv3d(up, conv.weight[:, :width], conv.bias, padding=1)
        del up
        d0 += nn.functional.conv3d(e0, conv.weight[:, width:], None, padding=1)
        del e0
        d0 = self.dec0[1](d0)
        correction = self.out(d0)[..., : shape[0], : shape[1], : shape[2]]
        return z + correction


class NSIDL(nn.Module):
    """Unrolled proximal gradient descent on the nonlinear dipole model."""

    def __init__(self, config: NSIDLConfig | None = None):
        super().__init__()
        self.config = config or NSIDLConfig()
        channels = 3 if self.config.noise_input else 2
        if self.config.shared_prox:
            self.prox = ProximalUNet(self.config.width, channels)  # v1's keys: prox.*
        else:
            self.proxes = nn.ModuleList(ProximalUNet(self.config.width, channels)
                                        for _ in range(self.config.n_iterations))
        self.log_steps = nn.Parameter(
            torch.full((self.config.n_iterations,), math.log(self.config.initial_step)))

    def prox_of(self, k: int) -> ProximalUNet:
        """The proximal network of iteration ``k``."""
        return self.prox if self.config.shared_prox else self.proxes[k]

    def forward(
        self,
        operator: DipoleOperator,
        field_ppm: torch.Tensor,
        mask: torch.Tensor,
        weight: torch.Tensor,
        phase_scale_rad_per_ppm,
        *,
        n_iterations: int | None = None,
        return_all: bool = False,
        max_prox_voxels: int | None = None,
        dc_steps: int = 0,
        dc_step_size: float = DC_STEP_SIZE,
        noise_sd_ppm: torch.Tensor | None = None,
    ):
        """Estimate chi (ppm) from the local field (ppm), all tensors (B, 1, X, Y, Z).

        ``phase_scale_rad_per_ppm`` is ``s = 2 pi gamma B0 TE 1e-6``: the phase per ppm
        at the effective echo time, a float or a (B, 1, 1, 1, 1) tensor.
        ``n_iterations`` runs only the first iterations (at most the trained number); the
        shipped weights record the number chosen on validation data.
        ``max_prox_voxels`` runs the proximal network in overlapping tiles of at most that
        many voxels (:mod:`qsmflow.dl.tiling`; the same result, for inference on large
        volumes); ``None`` runs it on the whole volume.
        ``dc_steps`` gradient steps of the nonlinear data term alone follow the network
        (``chi <- mask (chi - dc_step_size grad f(chi) / s^2)``, NDI's step): a final
        data-consistency step; weights files record the number chosen on the tuning head.
        ``noise_sd_ppm`` is the field's noise sd per voxel (ppm), seen by models with
        ``noise_input`` (``None``: zero, noise-free data) and ignored by the others.
        """
        n_iterations = self.config.n_iterations if n_iterations is None else n_iterations
        if not 1 <= n_iterations <= self.config.n_iterations:
            raise ValueError(f"n_iterations must be 1..{self.config.n_iterations}")
        s = phase_scale_rad_per_ppm
        field_ppm = field_ppm * mask
        phase = s * field_ppm
        weight_sq = (weight * mask) ** 2
        chi = operator.tkd(field_ppm) * mask
        conditions = [field_ppm / CHI_SCALE_PPM]
        if self.config.noise_input:
            noise = torch.zeros_like(field_ppm) if noise_sd_ppm is None else noise_sd_ppm
            conditions.append(noise * mask / CHI_SCALE_PPM)
        history = []
        for k in range(n_iterations):
            gradient = nonlinear_data_gradient(operator, chi, phase, weight_sq, s) / (s * s)
            z = chi - torch.exp(self.log_steps[k]) * gradient
            chi = apply_in_tiles(self.prox_of(k), [z / CHI_SCALE_PPM, *conditions],
                                 max_prox_voxels) * CHI_SCALE_PPM * mask
            history.append(chi)
        for _ in range(dc_steps):
            chi = data_consistency_step(operator, chi, mask, phase, weight_sq, s, dc_step_size)
        if dc_steps:
            history.append(chi)
        return history if return_all else chi
