"""NSIDL inference on one volume: numpy arrays in, numpy array out.

The dispatcher of every inversion method is :func:`qsmflow.inversion.invert_local_field`;
this module holds only what needs torch.
"""

from __future__ import annotations

import numpy as np
import torch

from .operators import DipoleOperator
from .weights import load_nsidl


def torch_device(device: str) -> torch.device:
    """The torch device for ``--device``, refusing CUDA where torch sees none."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU. Use "
                           "--device cpu, or install a CUDA build of torch (see README).")
    return torch.device(device)


def nsidl_invert(
    local_field_ppm: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    b0_direction,
    *,
    phase_scale_rad_per_ppm: float,
    weight: np.ndarray | None = None,
    weights_path=None,
    device: str = "cpu",
    n_threads: int | None = None,
) -> tuple[np.ndarray, str, int]:
    """Susceptibility (ppm) by NSIDL, with the weights' sha256 and the iterations run.

    ``local_field_ppm`` is zero outside ``mask`` (bool); ``weight`` is the data weight
    ``W`` in [0, 1] (default 1); ``phase_scale_rad_per_ppm`` is ``s = 2 pi gamma B0 TE``
    at the effective echo time.
    """
    device_t = torch_device(device)
    if n_threads:
        torch.set_num_threads(int(n_threads))
    model, digest = load_nsidl(weights_path, device=str(device_t))
    weight = np.ones(mask.shape) if weight is None else np.asarray(weight, np.float64)
    to_t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[None, None].to(device_t)  # noqa: E731
    with torch.no_grad():
        operator = DipoleOperator(mask.shape, voxel_size_mm, b0_direction).to(device_t)
        chi = model(operator, to_t(local_field_ppm), to_t(mask), to_t(weight),
                    phase_scale_rad_per_ppm, n_iterations=model.inference_iterations)
    chi_ppm = chi[0, 0].cpu().numpy().astype(np.float64) * mask
    return chi_ppm, digest, model.inference_iterations
