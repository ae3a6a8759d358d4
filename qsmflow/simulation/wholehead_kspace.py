"""Fine-grid physics of the whole-head phantom: continuous dipole field, k-space reduction.

Written apart from ``qsmflow.algorithms`` on purpose: the phantom's forward model and
resampling must not be the pipeline's own, or a benchmark would test code against itself.

References
----------
Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation of
field inhomogeneity due to spatial variation of magnetic susceptibility. Concepts Magn
Reson B 2005;25B:65-78.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

KSPACE_TAPER = 0.1  # Tukey taper over the outer 10% of the kept band (each axis)


def continuous_dipole_field_ppm(chi_ppm, voxel_mm, b0_direction, *, pad_vox: int,
                                extend_low_z_vox: int = 0, workers: int = 2) -> np.ndarray:
    """Field (ppm) of ``chi_ppm`` with the continuous kernel ``1/3 - (k.b)^2/k^2``, D(0)=0.

    The volume is zero-padded by ``pad_vox`` on every side to a fast FFT length; with
    ``extend_low_z_vox`` its lowest z slice is repeated that far below (a neck that goes on
    instead of ending at the edge of the model). ``voxel_mm`` is one size or one per axis.
    float32 throughout.
    """
    chi = np.asarray(chi_ppm, dtype=np.float32)
    padded_shape = [sfft.next_fast_len(n + 2 * pad_vox + (extend_low_z_vox if a == 2 else 0),
                                       real=True) for a, n in enumerate(chi.shape)]
    low = [pad_vox, pad_vox, pad_vox + extend_low_z_vox]
    padded = np.zeros(padded_shape, np.float32)
    inner = tuple(slice(lo, lo + n) for lo, n in zip(low, chi.shape, strict=True))
    padded[inner] = chi
    if extend_low_z_vox:
        padded[inner[0], inner[1], pad_vox:low[2]] = chi[:, :, :1]
    spectrum = sfft.rfftn(padded, workers=workers)
    del padded
    b = np.asarray(b0_direction, dtype=np.float64)
    b = b / np.linalg.norm(b)
    v = np.broadcast_to(np.asarray(voxel_mm, dtype=np.float64), 3)
    kx = sfft.fftfreq(padded_shape[0], v[0]).astype(np.float32)
    ky = sfft.fftfreq(padded_shape[1], v[1]).astype(np.float32)
    kz = sfft.rfftfreq(padded_shape[2], v[2]).astype(np.float32)
    kyz_b = ky[:, None] * np.float32(b[1]) + kz[None, :] * np.float32(b[2])
    kyz2 = ky[:, None] ** 2 + kz[None, :] ** 2
    for i, k in enumerate(kx):  # slab by slab: no full-size kernel in memory
        k2 = kyz2 + k * k
        with np.errstate(invalid="ignore", divide="ignore"):
            kernel = np.float32(1.0 / 3.0) - (kyz_b + k * np.float32(b[0])) ** 2 / k2
        if i == 0:
            kernel[0, 0] = 0.0
        spectrum[i] *= kernel
    field = sfft.irfftn(spectrum, padded_shape, workers=workers, overwrite_x=True)
    return np.ascontiguousarray(field[inner], dtype=np.float32)


def _band(n_fine: int, n_out: int):
    """Fine-FFT indices, output-FFT indices and taper weights of the kept frequencies."""
    half = (n_out - 1) // 2  # symmetric band; an even grid's Nyquist bin stays empty
    k = np.arange(-half, half + 1)
    edge = (1.0 - KSPACE_TAPER) * half
    weight = np.where(np.abs(k) <= edge, 1.0, 0.5 * (1.0 + np.cos(
        np.pi * (np.abs(k) - edge) / max(half - edge, 1e-9))))
    return k % n_fine, k % n_out, weight.astype(np.float32), k


def kspace_reduce(volume, factor: int, *, workers: int = 2) -> np.ndarray:
    """Reduce a fine-grid volume by an integer ``factor`` by cropping its spectrum.

    Output voxel ``j`` is centred on fine voxel ``factor * j``; the mean is kept. Real input
    gives real output (float32), complex input complex64.
    """
    volume = np.asarray(volume)
    shape_out = [n // factor for n in volume.shape]
    is_complex = np.iscomplexobj(volume)
    bands = [_band(n, m) for n, m in zip(volume.shape, shape_out, strict=True)]
    scale = np.float32(np.prod(shape_out) / np.prod(volume.shape))
    if is_complex:
        spectrum = sfft.fftn(volume.astype(np.complex64, copy=False), workers=workers)
        last_fine, last_out, last_w = bands[2][0], bands[2][1], bands[2][2]
        out = np.zeros(shape_out, np.complex64)
    else:
        spectrum = sfft.rfftn(volume.astype(np.float32, copy=False), workers=workers)
        keep = bands[2][3] >= 0
        last_fine, last_out, last_w = (bands[2][0][keep], bands[2][1][keep],
                                       bands[2][2][keep])
        out = np.zeros(shape_out[:2] + [shape_out[2] // 2 + 1], np.complex64)
    crop = spectrum[np.ix_(bands[0][0], bands[1][0], last_fine)]
    del spectrum
    crop *= (bands[0][2][:, None, None] * bands[1][2][None, :, None]
             * last_w[None, None, :] * scale)
    out[np.ix_(bands[0][1], bands[1][1], last_out)] = crop
    if is_complex:
        return sfft.ifftn(out, workers=workers, overwrite_x=True).astype(np.complex64)
    return sfft.irfftn(out, shape_out, workers=workers, overwrite_x=True).astype(np.float32)


def _footprint_weights(factor: int) -> np.ndarray:
    """Overlap of fine voxels with an output voxel centred on one of them (sums to 1)."""
    w = np.ones(factor + 1)
    w[0] = w[-1] = 0.5
    return w / factor


def fraction_reduce(mask, factor: int) -> np.ndarray:
    """Volume fraction of ``mask`` in each output voxel (centred on fine voxel factor*j; the
    grid's border voxels extend outwards)."""
    out = np.asarray(mask, dtype=np.float32)
    for axis in range(3):
        out = ndimage.correlate1d(out, _footprint_weights(factor), axis=axis, mode="nearest")
        out = out[(slice(None),) * axis + (slice(None, None, factor),)]
    return out


def label_reduce(labels, factor: int) -> np.ndarray:
    """The label covering most of each output voxel, if it covers more than half, else 0."""
    labels = np.asarray(labels)
    shape_out = tuple(n // factor for n in labels.shape)
    best = np.zeros(shape_out, np.float32)
    out = np.zeros(shape_out, labels.dtype)
    objects = ndimage.find_objects(labels)
    for index, box in enumerate(objects, start=1):
        if box is None:
            continue
        # Fine box aligned to the output grid, grown by one output voxel.
        fine = tuple(slice(max((s.start // factor - 1) * factor, 0),
                           min((s.stop // factor + 2) * factor, n))
                     for s, n in zip(box, labels.shape, strict=True))
        frac = fraction_reduce(labels[fine] == index, factor)
        coarse = tuple(slice(s.start // factor, s.start // factor + f)
                       for s, f in zip(fine, frac.shape, strict=True))
        win = (frac > 0.5) & (frac > best[coarse])
        best[coarse][win] = frac[win]
        out[coarse][win] = index
    return out


_HARMONICS = (
    (0, lambda x, y, z: np.ones_like(x)),
    (1, lambda x, y, z: x), (1, lambda x, y, z: y), (1, lambda x, y, z: z),
    (2, lambda x, y, z: x * y), (2, lambda x, y, z: y * z), (2, lambda x, y, z: x * z),
    (2, lambda x, y, z: x * x - y * y), (2, lambda x, y, z: 2 * z * z - x * x - y * y),
    (3, lambda x, y, z: x * (x * x - 3 * y * y)), (3, lambda x, y, z: y * (3 * x * x - y * y)),
    (3, lambda x, y, z: x * y * z), (3, lambda x, y, z: z * (x * x - y * y)),
    (3, lambda x, y, z: x * (4 * z * z - x * x - y * y)),
    (3, lambda x, y, z: y * (4 * z * z - x * x - y * y)),
    (3, lambda x, y, z: z * (2 * z * z - 3 * x * x - 3 * y * y)),
)


def solid_harmonics(x, y, z, *, max_order: int) -> list:
    """Real solid harmonics up to ``max_order`` (3 at most): 1, 4, 9 or 16 functions."""
    return [f(x, y, z) for order, f in _HARMONICS if order <= max_order]


def harmonic_sum(x, y, z, coefficients) -> np.ndarray:
    """sum_k c_k h_k(x, y, z) over the harmonics in :func:`solid_harmonics` order, term by
    term (no stack of full-size terms in memory)."""
    out = np.zeros_like(x)
    for c, (_, f) in zip(coefficients, _HARMONICS, strict=False):
        if c:
            out += np.float32(c) * f(x, y, z)
    return out
