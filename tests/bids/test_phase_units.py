"""Phase units: each convention recovers a known field (``phase_fields``); anything
ambiguous is refused."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsmflow.bids.errors import QSMInputError
from qsmflow.bids.phase_units import (
    CONVENTIONS,
    MIN_RANGE_COVERAGE,
    OPTION_SOURCE,
    phase_convention,
    phase_to_radians,
    phase_units_from_metadata,
    polar_from_complex,
)

from .phase_fields import DTE_S, ENCODINGS, FIELD_HZ, TE_S, field_from_phase, true_phase_rad


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_each_convention_recovers_the_known_field(encoding):
    encode, quantum_rad, units = ENCODINGS[encoding]
    stored = encode(true_phase_rad())
    decoded = np.stack([phase_to_radians(stored[..., k], source=f"echo-{k + 1}.nii")
                        for k in range(len(TE_S))], -1)
    for k in range(len(TE_S)):
        assert phase_convention(stored[..., k], source="p").units == units
    assert decoded.min() >= -np.pi and decoded.max() < np.pi
    error_hz = np.abs(field_from_phase(decoded) - FIELD_HZ)
    assert error_hz.max() <= quantum_rad / (2 * np.pi * DTE_S) + 1e-9, error_hz.max()


@pytest.mark.parametrize("encoding", ["mrad -3142..3142", "deg -180..180"])
def test_milliradians_and_degrees_are_no_longer_read_as_siemens_units(encoding):
    """They fit inside -4096..4095 but span too little of it: they were read as Siemens
    units (+-2.41 rad and +-0.138 rad) before."""
    stored = ENCODINGS[encoding][0](true_phase_rad()[..., 3])
    assert phase_convention(stored, source="p").units != "siemens"
    # The wrapped phase spans nearly 2 pi again (read as Siemens units: at most 4.82 rad).
    assert np.ptp(phase_to_radians(stored, source="p")) > 0.95 * 2 * np.pi


def test_siemens_signed_range_maps_to_pi():
    values = np.array([-4096, 0, 2048, 4095])
    out = phase_to_radians(values, source="p.nii")
    np.testing.assert_allclose(out, [-np.pi, 0, np.pi / 2, 4095 / 4096 * np.pi])


@pytest.mark.parametrize("values", [np.arange(-1500, 1501), np.linspace(-1, 1, 50),
                                    np.arange(0, 3001), np.zeros(10)])
def test_a_range_that_fits_no_unit_whole_is_refused(values):
    with pytest.raises(QSMInputError) as err:
        phase_to_radians(values, source="sub-01_part-phase_MEGRE.nii.gz")
    message = str(err.value)
    assert message.startswith("sub-01_part-phase_MEGRE.nii.gz: the phase values range")
    assert f"{values.min():g} to {values.max():g}" in message
    assert "--phase-units {rad,siemens,mrad,deg}" in message
    assert "\n" not in message


def test_the_option_decides_a_small_range_by_the_unit_not_by_min_max():
    values = np.array([-1500.0, 0.0, 1000.0, 1500.0])
    out = phase_to_radians(values, source="p", units="siemens", units_from=OPTION_SOURCE)
    np.testing.assert_allclose(out, values / 4096 * np.pi)
    out = phase_to_radians(values, source="p", units="mrad", units_from=OPTION_SOURCE)
    np.testing.assert_allclose(out, values / 1000)


def test_the_option_is_refused_where_the_values_do_not_fit_its_unit():
    with pytest.raises(QSMInputError, match="says the phase is in deg.*outside degrees"):
        phase_to_radians(np.array([-4096, 4095]), source="p", units="deg",
                         units_from=OPTION_SOURCE)


def test_sidecar_unit_contradicted_by_the_whole_range_of_another_is_refused():
    stored = ENCODINGS["deg -180..180"][0](true_phase_rad()[..., 3])
    with pytest.raises(QSMInputError, match="whole range of degrees.*--phase-units deg"):
        phase_to_radians(stored, source="p", units="siemens",
                         units_from="its sidecar (Manufacturer Siemens, ...)")
    with pytest.raises(QSMInputError, match=r'"Units": "rad" says.*outside radians'):
        phase_to_radians(np.array([-4096.0, 4095.0]), source="p", units="rad",
                         units_from='its sidecar\'s "Units": "rad"')


def test_sidecar_radians_accept_a_small_range():
    values = np.linspace(-1, 1, 50)
    np.testing.assert_allclose(
        phase_to_radians(values, source="p", units="rad", units_from="its sidecar"), values)


def test_metadata_that_gives_the_unit():
    assert phase_units_from_metadata({"Units": "rad"}, source="p")[0] == "rad"
    assert phase_units_from_metadata({"Units": "arbitrary"}, source="p") == (None, "")
    assert phase_units_from_metadata({"Manufacturer": "Siemens Healthineers",
                                      "ConversionSoftware": "dcm2niix"}, source="p")[0] == \
        "siemens"
    # Another converter may rescale Siemens phase: the range decides then.
    assert phase_units_from_metadata({"Manufacturer": "Siemens",
                                      "ConversionSoftware": "other"}, source="p")[0] is None
    assert phase_units_from_metadata({"Manufacturer": "GE"}, source="p")[0] is None
    with pytest.raises(QSMInputError, match="p: the sidecar's \"Units\": 'Hz'.*--phase-units"):
        phase_units_from_metadata({"Units": "Hz"}, source="p")


@pytest.mark.parametrize("units", [None, "rad"])
def test_integer_radians_are_refused_with_the_file_name(units):
    with pytest.raises(QSMInputError, match="p.nii.*rounded"):
        phase_to_radians(np.array([-3, 0, 2, 3]), source="p.nii", units=units,
                         units_from=OPTION_SOURCE)


def test_no_finite_values_is_refused():
    with pytest.raises(QSMInputError, match="no finite values"):
        phase_to_radians(np.full(4, np.nan), source="p")


def test_real_and_imaginary_parts_recover_the_known_field():
    """Integer real/imaginary images (as GE writes them), any common scale: the phase
    comes from the complex value. Rounding +-0.5 on parts of amplitude >= 500 moves the
    phase by at most 1.5e-3 rad per echo: 0.1 Hz."""
    rng = np.random.default_rng(7)
    amplitude = 1000 * rng.uniform(0.5, 1.0, FIELD_HZ.shape)[..., None]
    signal = amplitude * np.exp(1j * true_phase_rad())
    magnitude, phase = polar_from_complex(np.round(signal.real), np.round(signal.imag))
    assert np.abs(magnitude - np.abs(signal)).max() <= 0.71
    assert np.abs(field_from_phase(phase) - FIELD_HZ).max() < 0.1


def test_no_two_conventions_can_claim_the_same_range():
    """A range covering >= 90% of two conventions lies in both, so it is at most as wide
    as their overlap: that overlap is under 90% of the wider one for every pair."""
    for i, one in enumerate(CONVENTIONS):
        for other in CONVENTIONS[i + 1:]:
            overlap = min(one.high, other.high) - max(one.low, other.low)
            widest = max(one.high - one.low, other.high - other.low)
            assert overlap < MIN_RANGE_COVERAGE * widest, (one.name, other.name)


@given(st.integers(-4200, 6400), st.integers(0, 10000), st.booleans())
def test_any_range_is_one_convention_or_refused(low, span, integral):
    values = np.array([low, low + span], dtype=float)
    if not integral:
        values = values / 1000.0 + 0.0005  # e.g. float radians near -pi..pi
    try:
        convention = phase_convention(values, source="p")
    except QSMInputError as err:
        assert "--phase-units" in str(err)
        return
    assert convention.fits(values.min(), values.max(), bool(np.all(values % 1 == 0)))
    assert convention.coverage(values.min(), values.max()) >= MIN_RANGE_COVERAGE
    out = phase_to_radians(values, source="p")
    assert out.min() >= -np.pi and out.max() < np.pi
