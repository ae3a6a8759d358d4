"""The dipole operator: adjointness, agreement with numpy, and the data-term gradient."""

import numpy as np
import pytest
import torch

from qsmflow.algorithms.dipole import forward_field_ppm
from qsmflow.dl.operators import DipoleOperator, nonlinear_data_gradient, nonlinear_data_loss


@pytest.fixture
def operator():
    return DipoleOperator((37, 31, 23), (0.9, 1.0, 1.7), (0.2, -0.3, 0.93))


def test_adjoint(operator, rng):
    x = torch.from_numpy(rng.normal(size=(2, 1, 37, 31, 23)))
    y = torch.from_numpy(rng.normal(size=(2, 1, 37, 31, 23)))
    operator = operator.double()
    lhs = torch.sum(operator.A(x) * y)
    rhs = torch.sum(x * operator.A_adjoint(y))
    assert float(abs(lhs - rhs) / abs(lhs)) < 1e-10


def test_matches_numpy_forward_model(operator, rng):
    chi = rng.normal(size=(37, 31, 23))
    expected = forward_field_ppm(chi, (0.9, 1.0, 1.7), (0.2, -0.3, 0.93),
                                 pad_vox=[n // 4 for n in chi.shape])
    got = operator.double().A(torch.from_numpy(chi)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)  # the kernel buffer is float32


def test_has_no_trainable_parameters(operator):
    assert not list(operator.parameters())
    assert "kernel" in dict(operator.named_buffers())


def test_batched_kernels_match_single(rng):
    vsz = np.array([[1.0, 1.0, 1.0], [0.8, 1.2, 2.0]])
    bdir = np.array([[0, 0, 1.0], [0.3, 0.1, 0.95]])
    batched = DipoleOperator((20, 22, 18), vsz, bdir).double()
    x = torch.from_numpy(rng.normal(size=(2, 1, 20, 22, 18)))
    out = batched.A(x)
    for i in range(2):
        single = DipoleOperator((20, 22, 18), vsz[i], bdir[i]).double()
        torch.testing.assert_close(out[i:i + 1], single.A(x[i:i + 1]))


def test_nonlinear_gradient_matches_autograd_and_finite_differences(operator, rng):
    operator = operator.double()
    chi = torch.from_numpy(rng.normal(scale=0.05, size=(1, 1, 37, 31, 23))).requires_grad_()
    phase = torch.from_numpy(rng.uniform(-np.pi, np.pi, size=chi.shape))
    weight_sq = torch.from_numpy(rng.uniform(0.2, 1.0, size=chi.shape)) ** 2
    s = 7.5
    loss = nonlinear_data_loss(operator, chi, phase, weight_sq, s)
    (auto,) = torch.autograd.grad(loss, chi)
    analytic = nonlinear_data_gradient(operator, chi.detach(), phase, weight_sq, s)
    torch.testing.assert_close(analytic, auto, rtol=1e-9, atol=1e-9)
    direction = torch.from_numpy(rng.normal(size=chi.shape))
    eps = 1e-6
    with torch.no_grad():
        plus = nonlinear_data_loss(operator, chi + eps * direction, phase, weight_sq, s)
        minus = nonlinear_data_loss(operator, chi - eps * direction, phase, weight_sq, s)
    numeric = (plus - minus) / (2 * eps)
    assert float(abs(numeric - torch.sum(analytic * direction)) / abs(numeric)) < 1e-6


def test_tkd_matches_the_numpy_tkd(operator, rng):
    """One truncated inverse (algorithms.inversion.tkd_inverse_kernel) serves both."""
    from qsmflow.algorithms.inversion import tkd

    field = rng.normal(size=(37, 31, 23))
    expected = tkd(field, np.ones(field.shape, bool), (0.9, 1.0, 1.7), (0.2, -0.3, 0.93))
    got = operator.double().tkd(torch.from_numpy(field)[None, None])[0, 0].numpy()
    # The operator's kernel buffer is float32: 1e-7 relative on a kernel up to 1/0.19.
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
