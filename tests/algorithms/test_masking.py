"""Brain masks from magnitude: a head in air, and a crop with no air (the ROMEO case)."""

import numpy as np
import pytest

from qsmflow.algorithms.masking import brain_mask, otsu_threshold


def _grid(shape, voxel_size_mm):
    return np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * h
                         for n, h in zip(shape, voxel_size_mm, strict=True)], indexing="ij")


def _tubes(x, y, z, rng, n, radius_mm):
    """Straight dark vessels in random directions through the volume."""
    vessels = np.zeros(x.shape, bool)
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        point = rng.uniform(-10, 10, 3)
        d = np.stack([x - point[0], y - point[1], z - point[2]])
        along = np.einsum("i,i...->...", direction, d)
        vessels |= (d**2).sum(0) - along**2 < radius_mm**2
    return vessels


def test_crop_inside_the_head_keeps_the_whole_field_of_view(rng):
    """ROMEO's small dataset: 51 x 51 x 41 voxels at 0.47 x 0.47 x 1 mm, all tissue.

    Otsu on tissue alone splits gray from white matter; the old mask kept 0.6% of that
    crop. With no air in view, every voxel with signal is kept, vessels included.
    """
    vsz = (0.469, 0.469, 1.0)
    shape = (51, 51, 41)
    x, y, z = _grid(shape, vsz)
    wm = (np.abs(x) > 4) & (np.sin(y / 3.0) + 0.3 * z / 10 > -0.2)  # a tissue boundary
    magnitude = np.where(wm, 330.0, 380.0)
    magnitude *= 1.0 + 0.5 * (x - y) / 24  # receive-coil bias across the crop
    vessels = _tubes(x, y, z, rng, 3, 1.0)
    magnitude[vessels] *= 0.3
    magnitude += 12.0 * rng.normal(size=shape)
    mask = brain_mask(np.abs(magnitude), vsz)
    assert mask.mean() > 0.99
    assert mask[vessels].mean() > 0.95  # dark vessels that leave the crop stay in


def test_head_in_air_with_bias_and_dark_veins(rng):
    vsz = (1.5, 1.5, 2.0)
    shape = (100, 110, 76)
    x, y, z = _grid(shape, vsz)
    rho = np.sqrt((x / 62) ** 2 + (y / 75) ** 2 + (z / 58) ** 2)
    head = rho < 1.0
    magnitude = np.where(head, 1.0, 0.0)
    magnitude *= 0.4 + 1.2 * (x + 70) / 140  # a threefold receive bias from left to right
    veins = _tubes(x, y, z, rng, 4, 2.0) & (rho < 0.8)
    magnitude[veins] *= 0.15
    magnitude = np.abs(magnitude + 0.03 * (rng.normal(size=shape) + 1j * rng.normal(size=shape)))
    mask = brain_mask(magnitude, vsz)
    inner = rho < 0.93
    assert mask[inner].mean() > 0.99  # the dark (left) side and the veins stay in
    assert not mask[rho > 1.03].any()  # no air
    assert mask.sum() < head.sum()  # the final 1 mm erosion trims the surface


def test_explicit_threshold_and_errors():
    magnitude = np.zeros((20, 20, 20))
    magnitude[5:15, 5:15, 5:15] = 1.0
    mask = brain_mask(magnitude, (1, 1, 1), threshold=0.5, opening_mm=0, erode_mm=0)
    assert mask.sum() == 1000
    with pytest.raises(ValueError, match="zero everywhere"):
        brain_mask(np.zeros((5, 5, 5)), (1, 1, 1))


def test_otsu_splits_two_classes(rng):
    values = np.concatenate([rng.normal(10, 1, 1000), rng.normal(30, 2, 3000)])
    level = otsu_threshold(values)
    assert 12 < level < 25 and (values < level).sum() == pytest.approx(1000, abs=5)
