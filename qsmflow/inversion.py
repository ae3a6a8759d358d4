"""One entry point for every dipole inversion: the pipeline, the CLI and the Python API.

NSIDL (PyTorch, :mod:`qsmflow.dl`) is one method among the classical ones
(:mod:`qsmflow.algorithms.inversion`). torch is imported only when NSIDL runs, so
choosing a classical method, or building the command-line parser, never starts it.

>>> chi_ppm = invert_local_field(local_field_ppm, mask, (1, 1, 1), (0, 0, 1),
...                              method="nsidl", b0_t=3.0, te_s=0.02).chi_ppm  # doctest: +SKIP

References
----------
Shmueli K, et al. Magn Reson Med 2009;62:1510-1522 (TKD).
Bilgic B, et al. J Magn Reson Imaging 2014;40:181-191 (CFL2).
Polak D, et al. NMR Biomed 2020;33:e4271 (NDI).
Bilgic B, et al. Magn Reson Med 2014;72:1444-1459 (TV by ADMM).
Kames C, Wiggermann V, Rauscher A. NeuroImage 2018;167:276-283 (RTS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsmflow.algorithms.inversion import NDI_ITERATIONS, TKD_DEFAULT_THRESHOLD, cfl2, ndi, tkd
from qsmflow.algorithms.inversion_rts import rts
from qsmflow.algorithms.inversion_tv import tv
from qsmflow.constants import hz_per_ppm, rad_per_ppm

INVERSION_METHODS = ("nsidl", "tkd", "cfl2", "ndi", "tv", "rts")


@dataclass(frozen=True)
class InversionResult:
    chi_ppm: np.ndarray
    method: str
    weights_sha256: str | None = None
    iterations: int = 0  # 0 for the closed-form methods


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
    noise_sd_ppm: np.ndarray | None = None,
    weights_path=None,
    device: str = "cpu",
    n_threads: int | None = None,
) -> InversionResult:
    """Susceptibility (ppm) from the local field (ppm) with the chosen method.

    ``te_s`` is the effective echo time at which the nonlinear methods (NSIDL, NDI)
    model the phase ``s * field``, with ``s = 2 pi gamma B0 te``. The data weight
    ``weight`` is used by NSIDL, NDI and TV (TKD, CFL2 and RTS have unweighted data
    terms). ``noise_sd_ppm`` (the field's noise sd per voxel), ``weights_path``, ``device``
    and ``n_threads`` concern NSIDL only (noise: weights trained with it).
    """
    if method not in INVERSION_METHODS:
        raise ValueError(f"unknown inversion {method!r}; choose one of {INVERSION_METHODS}")
    mask = np.asarray(mask, bool)
    field = np.asarray(local_field_ppm, np.float64) * mask
    scale = rad_per_ppm(b0_t, te_s)
    if method == "tkd":
        return InversionResult(tkd(field, mask, voxel_size_mm, b0_direction,
                                   threshold=TKD_DEFAULT_THRESHOLD), method)
    if method == "cfl2":
        return InversionResult(cfl2(field, mask, voxel_size_mm, b0_direction), method)
    if method == "tv":
        return InversionResult(tv(field, mask, voxel_size_mm, b0_direction, weight=weight),
                               method)
    if method == "rts":
        return InversionResult(rts(field, mask, voxel_size_mm, b0_direction), method)
    if method == "ndi":
        return InversionResult(ndi(field, mask, voxel_size_mm, b0_direction,
                                   phase_scale_rad_per_ppm=scale, weight=weight,
                                   n_iterations=NDI_ITERATIONS), method,
                               iterations=NDI_ITERATIONS)
    from qsmflow.dl.inference import nsidl_invert

    chi_ppm, digest, iterations = nsidl_invert(
        field, mask, voxel_size_mm, b0_direction, phase_scale_rad_per_ppm=scale,
        weight=weight, noise_sd_ppm=noise_sd_ppm, weights_path=weights_path, device=device,
        n_threads=n_threads)
    return InversionResult(chi_ppm, method, digest, iterations=iterations)


def chi_in_field_units(field_hz: np.ndarray, mask: np.ndarray, voxel_size_mm, b0_direction,
                       *, b0_t: float, te_s: float, method: str = "nsidl",
                       **options) -> np.ndarray:
    """Susceptibility of a local field in Hz, returned in Hz-equivalent units (chi in ppm
    times Hz per ppm): the first estimate that
    :func:`qsmflow.algorithms.bgremove.refine_with_dipole_model` wants, whose field and
    model share one unit. ``options`` go to :func:`invert_local_field`."""
    scale = hz_per_ppm(b0_t)
    return scale * invert_local_field(np.asarray(field_hz) / scale, mask, voxel_size_mm,
                                      b0_direction, method=method, b0_t=b0_t, te_s=te_s,
                                      **options).chi_ppm
