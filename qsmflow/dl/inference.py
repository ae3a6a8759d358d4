"""NSIDL inference on one volume: numpy arrays in, numpy array out.

The dispatcher of every inversion method is :func:`qsmflow.inversion.invert_local_field`;
this module holds only what needs torch.
"""

from __future__ import annotations

import numpy as np
import torch

from .operators import DipoleOperator
from .weights import load_nsidl

# Voxels kept around the mask's bounding box. chi is zero outside the mask, so the crop
# changes only the dipole convolution's zero padding and the network's view beyond the
# mask edge: the margin covers the proximal network's receptive field (about 40 voxels
# across, so 20 each side) and more.
CROP_MARGIN_VOX = 24
# The U-Net pools twice by 2: a crop that starts on a multiple of 4 keeps its pooling grid.
CROP_ALIGN_VOX = 4
# Larger crops run the proximal network in overlapping tiles of at most this many voxels
# (qsmflow.dl.tiling: the same chi). A 1 mm brain's crop (about 150 x 190 x 160, 4.6 M)
# runs whole; a 0.5 mm 7T crop (about 40 M) in tiles.
PROX_TILE_VOXELS = 12_000_000


def torch_device(device: str) -> torch.device:
    """The torch device for ``--device``, refusing CUDA where torch sees none."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU. Use "
                           "--device cpu, or install a CUDA build of torch (see README).")
    return torch.device(device)


def mask_bounding_box(mask: np.ndarray, *, margin_vox: int = CROP_MARGIN_VOX,
                      align_vox: int = CROP_ALIGN_VOX) -> tuple[slice, ...]:
    """Slices of the mask's bounding box grown by ``margin_vox``, starting on multiples of
    ``align_vox`` and clipped to the volume."""
    occupied = np.argwhere(mask)
    if occupied.size == 0:
        raise ValueError("the mask is empty: there is nothing to invert")
    box = []
    for lo, hi, n in zip(occupied.min(0), occupied.max(0) + 1, mask.shape, strict=True):
        start = max(0, (int(lo) - margin_vox) // align_vox * align_vox)
        box.append(slice(start, min(n, int(hi) + margin_vox)))
    return tuple(box)


class _torch_threads:
    """Use ``n`` torch threads inside the block and restore the caller's count after."""

    def __init__(self, n: int | None):
        self.n, self.previous = n, None

    def __enter__(self):
        if self.n:
            self.previous = torch.get_num_threads()
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc):
        if self.previous is not None:
            torch.set_num_threads(self.previous)


def nsidl_invert(
    local_field_ppm: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    b0_direction,
    *,
    phase_scale_rad_per_ppm: float,
    weight: np.ndarray | None = None,
    noise_sd_ppm: np.ndarray | None = None,
    weights_path=None,
    device: str = "cpu",
    n_threads: int | None = None,
    max_prox_voxels: int | None = PROX_TILE_VOXELS,
) -> tuple[np.ndarray, str, int]:
    """Susceptibility (ppm) by NSIDL, with the weights' sha256 and the iterations run.

    ``local_field_ppm`` is zero outside ``mask`` (bool); ``weight`` is the data weight
    ``W`` in [0, 1] (default 1); ``noise_sd_ppm`` the field's noise sd per voxel (ppm), for
    weights trained with it (``noise_input``; default: zero, noise-free data);
    ``phase_scale_rad_per_ppm`` is ``s = 2 pi gamma B0 TE``
    at the effective echo time. The network runs on the mask's bounding box
    (:func:`mask_bounding_box`), in float32, its proximal network in tiles of at most
    ``max_prox_voxels`` voxels; ``n_threads`` torch threads are used for the call only.
    """
    device_t = torch_device(device)
    mask = np.asarray(mask, bool)
    box = mask_bounding_box(mask)
    weight = np.ones(mask.shape) if weight is None else np.asarray(weight)

    def to_t(array):
        cropped = np.ascontiguousarray(array[box], np.float32)
        return torch.from_numpy(cropped)[None, None].to(device_t)

    with _torch_threads(n_threads), torch.no_grad():
        model, digest = load_nsidl(weights_path, device=str(device_t))
        cropped_mask = mask[box]
        operator = DipoleOperator(cropped_mask.shape, voxel_size_mm, b0_direction).to(device_t)
        noise = None if noise_sd_ppm is None else to_t(noise_sd_ppm)
        chi = model(operator, to_t(local_field_ppm), to_t(mask), to_t(weight),
                    phase_scale_rad_per_ppm, n_iterations=model.inference_iterations,
                    max_prox_voxels=max_prox_voxels, dc_steps=model.inference_dc_steps,
                    noise_sd_ppm=noise)
        chi_ppm = np.zeros(mask.shape)
        chi_ppm[box] = chi[0, 0].cpu().numpy()
    return chi_ppm * mask, digest, model.inference_iterations
