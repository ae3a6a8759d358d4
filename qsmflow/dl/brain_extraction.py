"""Intracranial mask of a head image with deepbet (its two networks ship in its wheel).

deepbet first finds the head's bounding box with a small network on a 128^3 copy, then
segments the box at 256^3 with a second one; both are TorchScript models inside the
``deepbet`` package, so nothing is downloaded at run time.

References
----------
Fisch L, Zumdick S, Barkhau C, et al. deepbet: Fast brain extraction of T1-weighted MRI
using Convolutional Neural Networks. Comput Biol Med 2024;179:108845.
"""

from __future__ import annotations

import numpy as np
import torch

DEEPBET_THRESHOLD = 0.5  # deepbet's own default probability threshold


def deepbet_mask(magnitude_ras: np.ndarray, *, threshold: float = DEEPBET_THRESHOLD,
                 device: str = "cpu", n_threads: int = 1) -> np.ndarray:
    """Brain (intracranial) mask of a 3-D image whose axes point to RAS.

    Parameters
    ----------
    magnitude_ras : ndarray, 3-D
        The image with its axes reordered and flipped to (right, anterior, superior), as
        deepbet was trained (``nibabel.as_closest_canonical``); any voxel size.
    threshold : float
        Probability above which a voxel is brain.
    device : str
        ``"cpu"`` or a CUDA device.
    n_threads : int
        torch's CPU threads.

    Returns
    -------
    ndarray of bool, same shape: deepbet's largest component with its voids filled.
    """
    from deepbet.bet import BrainExtraction

    image = np.nan_to_num(np.asarray(magnitude_ras, dtype=np.float32))
    if image.ndim != 3:
        raise ValueError(f"deepbet takes a 3-D image, not one of shape {image.shape}")
    if not np.any(image > 0):
        raise ValueError("the image is zero everywhere: no brain mask can be made")
    torch.set_num_threads(max(1, int(n_threads)))
    extractor = BrainExtraction(no_gpu=str(device) == "cpu")
    probability = extractor.run_model(image.copy())
    return extractor.postprocess(probability > threshold).astype(bool)
