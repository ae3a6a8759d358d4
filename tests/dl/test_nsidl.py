"""NSIDL runs on odd shapes and oblique B0, and the shipped weights load and beat TKD."""

import numpy as np
import pytest
import torch

from qsmflow.algorithms.dipole import forward_field_ppm
from qsmflow.constants import rad_per_ppm
from qsmflow.dl.invert import invert_local_field
from qsmflow.dl.nsidl import NSIDL, NSIDLConfig
from qsmflow.dl.operators import DipoleOperator
from qsmflow.dl.weights import (
    WeightsError,
    default_weights_path,
    expected_sha256,
    load_nsidl,
    sha256_file,
)

HAVE_WEIGHTS = default_weights_path().is_file()


def test_untrained_model_runs_on_odd_shape_and_oblique_b0(rng):
    torch.manual_seed(0)
    model = NSIDL(NSIDLConfig(n_iterations=2, width=4)).double()
    shape = (37, 31, 23)
    operator = DipoleOperator(shape, (1.0, 0.8, 1.5), (0.3, 0.2, 0.93)).double()
    field = torch.from_numpy(rng.normal(scale=0.01, size=(1, 1, *shape)))
    mask = torch.ones_like(field)
    out = model(operator, field, mask, mask, 10.0)
    assert out.shape == field.shape and torch.isfinite(out).all()
    history = model(operator, field, mask, mask, 10.0, return_all=True)
    assert len(history) == 2
    out.sum().backward()  # differentiable end to end
    assert model.log_steps.grad is not None


def _sphere_phantom(shape, rng):
    grid = np.indices(shape, dtype=float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    mask = (((grid - centre) / (0.45 * np.array(shape)[:, None, None, None])) ** 2).sum(0) <= 1
    chi = np.zeros(shape)
    for _ in range(8):
        c = rng.uniform(0.3, 0.7, 3)[:, None, None, None] * np.array(shape)[:, None, None, None]
        r = rng.uniform(2.5, 5.0)
        chi[((grid - c) ** 2).sum(0) <= r**2] = rng.uniform(-0.05, 0.2)
    return chi * mask, mask


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="no shipped NSIDL weights in this checkout")
def test_shipped_weights_load_with_matching_sha256():
    model, digest = load_nsidl()
    assert digest == expected_sha256(default_weights_path()) == sha256_file(
        default_weights_path())
    assert isinstance(model, NSIDL) and not model.training


def test_corrupt_weights_are_refused(tmp_path):
    bad = tmp_path / "nsidl.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="not valid NSIDL weights"):
        load_nsidl(bad)
    with pytest.raises(WeightsError, match="not found"):
        load_nsidl(tmp_path / "missing.pt")


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="no shipped NSIDL weights in this checkout")
def test_shipped_weights_beat_tkd_on_a_small_fixed_phantom(rng):
    shape, vsz, b0 = (48, 44, 40), (1.0, 1.0, 1.0), (0.1, 0.15, 0.98)
    chi, mask = _sphere_phantom(shape, rng)
    field = forward_field_ppm(chi, vsz, b0) * mask
    s = rad_per_ppm(3.0, 0.02)
    field = field + rng.normal(scale=0.01 / s, size=shape) * mask
    errors = {}
    for method in ("tkd", "nsidl"):
        estimate = invert_local_field(field, mask, vsz, b0, method=method, b0_t=3.0,
                                      te_s=0.02).chi_ppm
        errors[method] = np.linalg.norm((estimate - chi)[mask]) / np.linalg.norm(chi[mask])
    assert errors["nsidl"] < 0.8 * errors["tkd"], errors
