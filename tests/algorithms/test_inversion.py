"""Classical inversions recover a known susceptibility from its own field."""

import numpy as np
import pytest

from qsmflow.algorithms.dipole import forward_field_ppm
from qsmflow.algorithms.inversion import cfl2, ndi, tkd, tkd_inverse_kernel
from qsmflow.algorithms.metrics import nrmse_percent
from qsmflow.constants import TKD_THRESHOLD


def _phantom(shape, rng):
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    centre = [(n - 1) / 2 for n in shape]
    mask = sum(((g - c) / (0.42 * n)) ** 2
               for g, c, n in zip(grids, centre, shape, strict=True)) <= 1
    chi = np.zeros(shape)
    for _ in range(6):
        c = [rng.uniform(0.35, 0.65) * n for n in shape]
        r = rng.uniform(2.5, 5)
        inside = sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True)) <= r**2
        chi[inside] = rng.uniform(-0.1, 0.2)
    return chi * mask, mask


def _nrmse(x, y, mask):
    return nrmse_percent(x, y, mask) / 100


@pytest.mark.parametrize("method,tol", [("tkd", 0.55), ("cfl2", 0.55), ("ndi", 0.45)])
def test_inversions_recover_chi(method, tol, rng):
    shape, vsz, b0 = (40, 37, 31), (1.0, 1.1, 1.3), (0.1, 0.2, 0.97)
    chi, mask = _phantom(shape, rng)
    field = forward_field_ppm(chi, vsz, b0) * mask
    if method == "tkd":
        estimate = tkd(field, mask, vsz, b0)
    elif method == "cfl2":
        estimate = cfl2(field, mask, vsz, b0, lam=1e-3)
    else:
        estimate = ndi(field, mask, vsz, b0, phase_scale_rad_per_ppm=5.0, n_iterations=200)
    assert _nrmse(estimate, chi, mask) < tol
    # The estimate reproduces the measured field inside the mask.
    refit = forward_field_ppm(estimate, vsz, b0)
    assert _nrmse(refit, field, mask) < 0.35
    assert np.all(estimate[~mask] == 0)


def test_ndi_in_the_nonlinear_regime_beats_tkd(rng):
    """Strong sources whose phase reaches pi: sin() is far from linear, NDI still fits."""
    shape, vsz, b0 = (36, 36, 36), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)
    chi, mask = _phantom(shape, rng)
    chi = chi * 8  # strong sources
    field = forward_field_ppm(chi, vsz, b0) * mask
    scale = np.pi / np.abs(field[mask]).max()  # phase up to pi
    estimate = ndi(field, mask, vsz, b0, phase_scale_rad_per_ppm=scale, n_iterations=200)
    error_ndi = _nrmse(estimate, chi, mask)
    assert error_ndi < 0.30
    assert error_ndi < 0.9 * _nrmse(tkd(field, mask, vsz, b0), chi, mask)


def test_tkd_inverse_kernel_truncates_at_the_threshold():
    t = TKD_THRESHOLD
    kernel = np.array([0.0, 0.5, -0.5, 0.9 * t, -0.9 * t, 0.0, t, -2 / 3])[None, None, :]
    inverse = tkd_inverse_kernel(kernel)
    expected = [0.0, 2.0, -2.0, 1 / t, -1 / t, 1 / t, 1 / t, -1.5]  # k = 0 first: set to 0
    np.testing.assert_allclose(inverse[0, 0], expected, rtol=1e-15)
