"""NSIDL v2 training patches: the bank's fine-grid physics, seen as the pipeline sees it.

Each patch is drawn from one bank volume (:mod:`qsmflow.training.bank`): a random
orthogonal map (rotation, sometimes with a left-right flip) and voxel size 0.6-1.5 mm
(anisotropic in 40 % of patches) place the patch grid in the head, and chi and the field
are resampled by cubic splines (both are band-limited at 1 mm by the k-space reduction;
the B0 direction follows the map). Random sources with their own fine-grid physics
(:mod:`qsmflow.training.sources`) are added, then the input is degraded as the pipeline's
would be (:mod:`qsmflow.training.augment`): mask change, residual background, edge error,
W and noise. The truth is chi inside the changed mask.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from qsmflow.dl.operators import DipoleOperator

from . import augment
from .sources import patch_sources
from .synthetic import Batch

VOXEL_RANGE_MM = (0.6, 1.5)
ANISOTROPIC_FRACTION = 0.4
MAX_B0_ANGLE_DEG = 45.0  # B0 relative to the patch's z axis (oblique acquisitions)
SOURCE_FRACTION = 0.6
MIN_BRAIN_FRACTION = 0.15  # a patch holds at least this much brain


class PreparedVolume:
    """A bank volume with spline coefficients of chi and field (prefiltered once)."""

    def __init__(self, volume):
        self.volume = volume
        self.chi_coef = ndimage.spline_filter(volume.chi_ppm, order=3).astype(np.float32)
        self.field_coef = ndimage.spline_filter(volume.field_ppm, order=3).astype(np.float32)
        self.brain_vox = np.argwhere(volume.brain)


def prepare(volumes) -> list[PreparedVolume]:
    return [PreparedVolume(v) for v in volumes]


def random_orthogonal(rng, b0_bank, max_angle_deg: float = MAX_B0_ANGLE_DEG):
    """A random rotation (a left-right flip half the time) whose patch frame sees B0 within
    ``max_angle_deg`` of its z axis; returns the matrix and B0 in the patch frame."""
    while True:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.linalg.det(q))
        if rng.random() < 0.5:
            q = q @ np.diag([-1.0, 1.0, 1.0])
        b = q.T @ b0_bank
        if b[2] >= np.cos(np.deg2rad(max_angle_deg)):
            return q, b / np.linalg.norm(b)


def draw_patch(prepared: PreparedVolume, rng, patch: int, *, clean_fraction: float = 0.0) -> dict:
    """One patch's arrays (numpy) before it becomes part of a batch."""
    vol = prepared.volume
    if rng.random() < ANISOTROPIC_FRACTION:
        vsz = rng.uniform(*VOXEL_RANGE_MM, 3)
    else:
        vsz = np.full(3, rng.uniform(*VOXEL_RANGE_MM))
    shape = (patch,) * 3
    for _ in range(20):
        q, b0 = random_orthogonal(rng, vol.b0_direction)
        centre = prepared.brain_vox[rng.integers(len(prepared.brain_vox))]
        local = (np.indices(shape, dtype=np.float64) - (patch - 1) / 2) * vsz[:, None, None, None]
        src = np.einsum("ij,j...->i...", q, local) / vol.voxel_size_mm + \
            centre[:, None, None, None]
        brain = ndimage.map_coordinates(vol.brain.astype(np.float32), src, order=1) > 0.5
        if brain.mean() >= MIN_BRAIN_FRACTION:
            break
    sample = lambda coef: ndimage.map_coordinates(coef, src, order=3, prefilter=False)  # noqa: E731
    chi, field = sample(prepared.chi_coef) * brain, sample(prepared.field_coef)
    m0 = ndimage.map_coordinates(vol.m0, src, order=1)
    r2s = ndimage.map_coordinates(vol.r2star_3t_hz, src, order=1)
    if rng.random() < SOURCE_FRACTION:
        chi_src, field_src = patch_sources(rng, brain, vsz, b0)
        chi, field = chi + chi_src * brain, field + field_src
    # A clean patch (noise-conditioned runs only) is the field as it is: the true mask, no
    # residual background, edge error or noise, and a noise sd of zero that says so.
    clean = bool(clean_fraction) and rng.random() < clean_fraction
    mask = brain if clean else augment.change_mask(
        brain, vsz, rng.uniform(-augment.MASK_CHANGE_MM, augment.MASK_CHANGE_MM))
    if not mask.any():
        mask = brain
    if not clean:
        field = field + augment.residual_background_ppm(rng, mask, vsz, b0)
        field = field + augment.edge_error_ppm(rng, mask, vsz)
    weight, noise, scale, noise_sd = augment.weight_and_noise(rng, mask, m0, r2s, vsz,
                                                              noise_free=clean)
    return {"field_ppm": (field + noise) * mask, "chi_ppm": chi * mask, "mask": mask,
            "weight": weight, "phase_scale": scale, "voxel_size_mm": vsz, "b0_direction": b0,
            "noise_sd_ppm": noise_sd}


def collate(patches) -> Batch:
    """Stack patches into a :class:`~qsmflow.training.synthetic.Batch` with its operator."""
    shape = patches[0]["mask"].shape
    vszs = np.asarray([p["voxel_size_mm"] for p in patches])
    bdirs = np.asarray([p["b0_direction"] for p in patches])
    to_t = lambda key: torch.from_numpy(np.stack(  # noqa: E731
        [np.asarray(p[key], np.float32) for p in patches]))[:, None]
    scale = torch.tensor([p["phase_scale"] for p in patches], dtype=torch.float32)
    noise_sd = to_t("noise_sd_ppm") if "noise_sd_ppm" in patches[0] else None
    return Batch(to_t("field_ppm"), to_t("chi_ppm"), to_t("mask"), to_t("weight"),
                 scale.view(-1, 1, 1, 1, 1), DipoleOperator(shape, vszs, bdirs), vszs, bdirs,
                 noise_sd)


def sample_batch_v2(prepared, rng, *, batch_size: int = 2, patch: int = 48,
                    clean_fraction: float = 0.0) -> Batch:
    """A batch of v2 patches from random bank volumes (see module docstring)."""
    return collate([draw_patch(prepared[int(rng.integers(len(prepared)))], rng, patch,
                               clean_fraction=clean_fraction)
                    for _ in range(batch_size)])
