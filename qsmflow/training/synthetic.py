"""Synthetic NSIDL training and validation samples: anatomy-based patches plus random sources.

Each sample is a patch of a randomised MNI-based head model (see
``qsmflow.simulation.phantom``), seen at a random orientation, voxel size (isotropic or
not, 0.8-2.0 mm), smooth random deformation and B0 direction, with random geometric
sources (ellipsoids, cylinders; sometimes strong, as hemorrhage or calcification) added.
The local field is forward-simulated from the sources inside the patch's brain mask,
noise is added to the phase with a magnitude-dependent standard deviation, and the
phase scale ``s`` comes from a random field strength and echo time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from qsmflow.constants import rad_per_ppm
from qsmflow.dl.operators import DipoleOperator
from qsmflow.simulation.anatomy import load_mni_anatomy
from qsmflow.simulation.phantom import HeadModel, build_head_model

B0_CHOICES_T = (1.5, 3.0, 3.0, 7.0)  # 3T twice: the most common field
TE_RANGE_S = (0.008, 0.025)  # effective (mean) echo time of multi-echo protocols
# Phase noise at full weight, in rad: multi-echo fits at per-echo SNR ~20-200.
PHASE_NOISE_RANGE_RAD = (0.003, 0.03)
MIN_WEIGHT = 0.2


@dataclass
class Batch:
    field_ppm: torch.Tensor  # (B, 1, X, Y, Z) noisy local field
    chi_ppm: torch.Tensor  # ground truth
    mask: torch.Tensor
    weight: torch.Tensor
    phase_scale: torch.Tensor  # (B, 1, 1, 1, 1) rad per ppm
    operator: DipoleOperator
    voxel_size_mm: np.ndarray  # (B, 3)
    b0_direction: np.ndarray  # (B, 3), voxel coordinates
    noise_sd_ppm: torch.Tensor | None = None  # (B, 1, X, Y, Z) sd of the field's noise


def random_head_models(seed: int, n_models: int) -> list[HeadModel]:
    """Head models with jittered tissue values, random veins and random lesions."""
    rng = np.random.default_rng(seed)
    anatomy = load_mni_anatomy()
    brain_mm = np.argwhere(anatomy.brain)
    models = []
    for _ in range(n_models):
        lesions = []
        for _ in range(int(rng.integers(0, 4))):
            centre_vox = brain_mm[rng.integers(len(brain_mm))]
            centre_mm = anatomy.affine[:3, :3] @ centre_vox + anatomy.affine[:3, 3]
            kind = "hemorrhage" if rng.random() < 0.6 else "calcification"
            lesions.append((kind, tuple(centre_mm), float(rng.uniform(2.0, 7.0))))
        models.append(build_head_model(rng, anatomy=anatomy, chi_jitter=0.35,
                                       n_veins=int(rng.integers(10, 40)),
                                       lesions=tuple(lesions), sinuses=False))
    return models


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def _random_sources(rng, shape, voxel_size_mm) -> np.ndarray:
    """A few ellipsoids and cylinders of random susceptibility, in ppm."""
    chi = np.zeros(shape, np.float32)
    grid = np.indices(shape, dtype=np.float32) * \
        np.asarray(voxel_size_mm, np.float32)[:, None, None, None]
    extent = np.asarray(shape) * voxel_size_mm
    for _ in range(int(rng.integers(1, 5))):
        centre = rng.uniform(0.15, 0.85, 3) * extent
        rotation = _random_rotation(rng)
        d = np.einsum("ij,j...->i...", rotation.T.astype(np.float32),
                      grid - centre[:, None, None, None].astype(np.float32))
        if rng.random() < 0.7:
            axes = rng.uniform(1.0, 8.0, 3)
            region = ((d / axes[:, None, None, None]) ** 2).sum(0) <= 1
        else:  # a cylinder (vessel-like) along a random direction
            radius = rng.uniform(0.6, 3.0)
            region = (d[0] ** 2 + d[1] ** 2 <= radius**2) & (np.abs(d[2]) < rng.uniform(5, 40))
        strong = rng.random() < 0.2
        value = rng.uniform(0.4, 1.5) * rng.choice([-1, 1]) if strong else rng.uniform(-0.15, 0.4)
        chi[region] = value
    return chi


def sample_batch(models: list[HeadModel], rng: np.random.Generator, *, batch_size: int = 2,
                 patch: int = 48) -> Batch:
    """Draw a batch of simulated patches (see module docstring)."""
    shape = (patch,) * 3
    chis, masks, weights, scales, vszs, bdirs = [], [], [], [], [], []
    for _ in range(batch_size):
        model = models[int(rng.integers(len(models)))]
        if rng.random() < 0.6:
            voxel_size = np.full(3, rng.uniform(0.8, 2.0))
        else:
            voxel_size = rng.uniform(0.8, 2.0, 3)
        rotation = _random_rotation(rng)
        brain_vox = np.argwhere(model.brain)
        centre_vox = brain_vox[rng.integers(len(brain_vox))]
        centre_world = model.affine[:3, :3] @ centre_vox + model.affine[:3, 3]
        local = (np.indices(shape, dtype=np.float64) - (patch - 1) / 2) * \
            voxel_size[:, None, None, None]
        world = np.einsum("ij,j...->i...", rotation, local) + centre_world[:, None, None, None]
        # Smooth random deformation, up to ~3 mm.
        coarse = rng.normal(scale=rng.uniform(0, 1.5), size=(3, 4, 4, 4))
        world += np.stack([ndimage.zoom(c, patch / 4, order=3) for c in coarse])
        inv = np.linalg.inv(model.affine)
        src = np.einsum("ij,j...->i...", inv[:3, :3], world) + inv[:3, 3][:, None, None, None]
        chi = ndimage.map_coordinates(model.chi_ppm, src, order=1)
        brain = ndimage.map_coordinates(model.brain.astype(np.float32), src, order=1) > 0.5
        pd = ndimage.map_coordinates(model.proton_density, src, order=1)
        r2s = ndimage.map_coordinates(model.r2star_hz, src, order=1)
        if rng.random() < 0.6:
            extra = _random_sources(rng, shape, voxel_size)
            chi = np.where(extra != 0, extra, chi)
        chi = chi * brain
        b0_t = float(rng.choice(B0_CHOICES_T))
        te_s = rng.uniform(*TE_RANGE_S)
        magnitude = pd * np.exp(-r2s * te_s * b0_t / 3.0)  # R2* scales ~ with B0
        ref = np.median(magnitude[brain]) if brain.any() else 1.0
        weight = np.clip(magnitude / max(ref, 1e-6), MIN_WEIGHT, 1.0) * brain
        tilt = np.deg2rad(rng.uniform(0, 40))
        azimuth = rng.uniform(0, 2 * np.pi)
        b0_dir = np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth),
                           np.cos(tilt)])
        chis.append(chi)
        masks.append(brain)
        weights.append(weight)
        scales.append(rad_per_ppm(b0_t, te_s))
        vszs.append(voxel_size)
        bdirs.append(b0_dir)
    operator = DipoleOperator(shape, np.asarray(vszs), np.asarray(bdirs))
    to_t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[:, None]  # noqa: E731
    chi_t, mask_t, weight_t = to_t(chis), to_t(masks), to_t(weights)
    scale_t = torch.tensor(scales, dtype=torch.float32).view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        field = operator.A(chi_t) * mask_t
        noise_rad = torch.from_numpy(rng.normal(size=field.shape).astype(np.float32))
        noise_sd_rad = torch.from_numpy(
            rng.uniform(*PHASE_NOISE_RANGE_RAD, (batch_size, 1, 1, 1, 1)).astype(np.float32))
        field = field + noise_sd_rad * noise_rad / weight_t.clamp(min=MIN_WEIGHT) / scale_t
    return Batch(field * mask_t, chi_t, mask_t, weight_t, scale_t, operator, np.asarray(vszs),
                 np.asarray(bdirs))
