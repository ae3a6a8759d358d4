import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsmflow.bids.errors import QSMInputError
from qsmflow.bids.phase_units import phase_to_radians


def test_siemens_signed_range_maps_to_pi():
    values = np.array([-4096, 0, 2048, 4095])
    out = phase_to_radians(values, is_integer_type=True, source="p.nii")
    np.testing.assert_allclose(out, [-np.pi, 0, np.pi / 2, 4095 / 4096 * np.pi])


def test_unsigned_12bit_range_maps_to_pi():
    values = np.array([0, 2048, 4095])
    out = phase_to_radians(values, is_integer_type=True, source="p.nii")
    np.testing.assert_allclose(out, [-np.pi, 0, 4095 / 4096 * 2 * np.pi - np.pi])


def test_scaling_uses_known_range_not_observed_extremes():
    """A phase that spans only part of the range is not stretched to -pi..pi."""
    values = np.array([1000, 1100, 1200])
    out = phase_to_radians(values, is_integer_type=True, source="p.nii")
    np.testing.assert_allclose(np.diff(out), 100 / 4096 * 2 * np.pi)


def test_float_radians_pass_through():
    values = np.array([-3.1, 0.2, 3.14159])
    np.testing.assert_allclose(phase_to_radians(values, is_integer_type=False, source="p"),
                               values)


def test_integer_radians_are_refused_with_the_file_name():
    with pytest.raises(QSMInputError, match="p.nii.*rounded"):
        phase_to_radians(np.array([-3, 0, 2, 3]), is_integer_type=True, source="p.nii")


def test_unknown_range_is_refused():
    with pytest.raises(QSMInputError, match="neither radians"):
        phase_to_radians(np.array([0.0, 12.5, 100.0]), is_integer_type=False, source="x.nii")


@given(st.lists(st.integers(-4096, 4095), min_size=2, max_size=50))
def test_signed_scanner_units_always_land_in_minus_pi_to_pi(values):
    values = np.array(values)
    if values.min() >= -4 and values.max() <= 4:
        return  # small integers: the refused ambiguous case, tested above
    out = phase_to_radians(values, is_integer_type=True, source="p")
    assert out.min() >= -np.pi and out.max() < np.pi
    # Differences are preserved up to the known scale (no min/max stretching).
    if values.min() < 0:
        np.testing.assert_allclose(np.diff(out), np.diff(values) / 4096 * np.pi, atol=1e-12)
