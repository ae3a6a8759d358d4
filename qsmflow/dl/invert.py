"""One entry point for every dipole inversion: the pipeline, the CLI and the Python API.

>>> chi_ppm = invert_local_field(local_field_ppm, mask, (1, 1, 1), (0, 0, 1),
...                              method="nsidl", b0_t=3.0, te_s=0.02)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qsmflow.algorithms.inversion import cfl2, ndi, tkd
from qsmflow.constants import rad_per_ppm

from .operators import DipoleOperator
from .weights import load_nsidl

INVERSION_METHODS = ("nsidl", "tkd", "cfl2", "ndi")
NDI_ITERATIONS = 60  # early stopping: NDI's regularisation (Polak 2020)


@dataclass(frozen=True)
class InversionResult:
    chi_ppm: np.ndarray
    method: str
    weights_sha256: str | None = None
    iterations: int = 0  # 0 for the closed-form methods


def _torch_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU. Use "
                           "--device cpu, or install a CUDA build of torch (see README).")
    return torch.device(device)


def invert_local_field(
    local_field_ppm: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    b0_direction,
    *,
    method: str = "nsidl",
    b0_t: float,
    te_s: float,
    weight: np.ndarray | None = None,
    weights_path=None,
    device: str = "cpu",
    n_threads: int | None = None,
) -> InversionResult:
    """Susceptibility (ppm) from the local field (ppm) with the chosen method.

    ``te_s`` is the effective echo time at which the nonlinear methods (NSIDL, NDI)
    model the phase ``s * field``, with ``s = 2 pi gamma B0 te``.
    """
    if method not in INVERSION_METHODS:
        raise ValueError(f"unknown inversion {method!r}; choose one of {INVERSION_METHODS}")
    mask = np.asarray(mask, bool)
    field = np.asarray(local_field_ppm, np.float64) * mask
    scale = rad_per_ppm(b0_t, te_s)
    if method == "tkd":
        return InversionResult(tkd(field, mask, voxel_size_mm, b0_direction), method)
    if method == "cfl2":
        return InversionResult(cfl2(field, mask, voxel_size_mm, b0_direction), method)
    if method == "ndi":
        return InversionResult(ndi(field, mask, voxel_size_mm, b0_direction,
                                   phase_scale_rad_per_ppm=scale, weight=weight,
                                   n_iterations=NDI_ITERATIONS), method,
                               iterations=NDI_ITERATIONS)
    torch_device = _torch_device(device)
    if n_threads:
        torch.set_num_threads(int(n_threads))
    model, digest = load_nsidl(weights_path, device=str(torch_device))
    weight = np.ones(mask.shape) if weight is None else np.asarray(weight, np.float64)
    to_t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[None, None].to(torch_device)  # noqa: E731
    with torch.no_grad():
        operator = DipoleOperator(mask.shape, voxel_size_mm, b0_direction).to(torch_device)
        chi = model(operator, to_t(field), to_t(mask), to_t(weight), scale,
                    n_iterations=model.inference_iterations)
    return InversionResult(chi[0, 0].cpu().numpy().astype(np.float64) * mask, method, digest,
                           iterations=model.inference_iterations)
