"""Property tests: sidecar metadata parsing (real pybids indexing of skeleton datasets),
phase scaling by the known range, and the entity-to-filename builder.

tests/bids has the example-based tests and two properties (signed scanner units, entity
round trip with four entities); these add what they do not cover.
"""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qsmflow.bids.discovery import MAX_PLAUSIBLE_B0_T, MAX_PLAUSIBLE_TE_S, find_gre_runs
from qsmflow.bids.errors import QSMInputError
from qsmflow.bids.naming import (
    CANONICAL_ENTITY_ORDER,
    ENTITIES,
    bids_filename,
    derivative_path,
)
from qsmflow.bids.phase_units import OPTION_SOURCE, phase_to_radians
from tests.bids.conftest import make_skeleton

# Deterministic: the same examples on every run, and no example database on disk.
PROPERTY = settings(derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Anything a converter or a person may have written into a JSON sidecar field.
JSON_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
    st.booleans(), st.none(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.lists(st.floats(0, 1), min_size=1, max_size=3),
    st.floats(0.0, 0.03).map(str),  # a number written as a string
    st.floats(0.0, 0.03),  # plausible echo times
)


def _as_number(value) -> float | None:
    """What the field means, if it is a finite number (JSON strings of numbers count)."""
    if value is None or isinstance(value, (bool, list)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _discover(**skeleton):
    with tempfile.TemporaryDirectory() as tmp:
        root = make_skeleton(Path(tmp) / "bids", **skeleton)
        discovery = find_gre_runs(root)
    return discovery


@settings(PROPERTY, max_examples=30)
@given(value=JSON_VALUES)
def test_any_echo_time_value_is_parsed_or_explained(value):
    """Echo 2 of three (4, ?, 12 ms): valid exactly when its value is a number of
    seconds between its neighbours; otherwise one message naming the field."""
    echo2 = {f"sub-01_echo-2_part-{part}_MEGRE": {"EchoTime": value} for part in ("mag",
                                                                                   "phase")}
    discovery = _discover(te_s=(0.004, 0.008, 0.012), sidecar_overrides=echo2)
    number = _as_number(value)
    if number is not None and 0.004 < number < 0.012:
        (run,) = discovery.runs
        assert run.echo_times_s == (0.004, number, 0.012)
    else:
        assert not discovery.runs
        message = discovery.failures["sub-01"]
        assert "EchoTime" in message
        assert "echo-2" in message or "echo times" in message
        assert "\n" not in message and len(message) < 1000


@settings(PROPERTY, max_examples=30)
@given(value=JSON_VALUES)
def test_any_field_strength_value_is_parsed_or_explained(value):
    overrides = {f"sub-01_echo-{e}_part-{p}_MEGRE": {"MagneticFieldStrength": value}
                 for e in (1, 2, 3) for p in ("mag", "phase")}
    discovery = _discover(sidecar_overrides=overrides)
    number = _as_number(value)
    if number is not None and 0 < number <= MAX_PLAUSIBLE_B0_T:
        assert discovery.runs[0].b0_t == number
    else:
        assert not discovery.runs
        message = discovery.failures["sub-01"]
        assert "MagneticFieldStrength" in message and "_part-phase_MEGRE" in message
        if value is None:
            assert "--b0-tesla" in message


@settings(PROPERTY, max_examples=25)
@given(te_s=st.lists(st.floats(1e-4, MAX_PLAUSIBLE_TE_S), min_size=1, max_size=5,
                     unique=True).map(sorted),
       b0_t=st.floats(0.05, MAX_PLAUSIBLE_B0_T))
def test_valid_metadata_round_trips_exactly(te_s, b0_t):
    discovery = _discover(n_echoes=len(te_s), te_s=tuple(te_s), b0_t=b0_t)
    (run,) = discovery.runs
    assert run.echo_times_s == tuple(te_s) and run.b0_t == b0_t
    assert len(run.phase_files) == len(te_s)


# --- phase scaling ----------------------------------------------------------------------

@PROPERTY
@given(st.lists(st.integers(0, 4095), min_size=2, max_size=60), st.booleans())
def test_unsigned_scanner_units_map_by_the_known_range(values, given_unit):
    """0..4095 -> -pi..pi is a fixed affine map, whatever part of the range is used: with
    --phase-units siemens always; from the values only when they span >= 90% of it."""
    values = np.array(values)
    units = dict(units="siemens", units_from=OPTION_SOURCE) if given_unit else {}
    try:
        out = phase_to_radians(values, source="p.nii", **units)
    except QSMInputError as err:
        assert not given_unit and np.ptp(values) < 0.9 * 4095
        assert "--phase-units" in str(err)
        return
    assert out.min() >= -np.pi and out.max() < np.pi
    np.testing.assert_allclose(out, values / 4096 * 2 * np.pi - np.pi, atol=1e-12)


@PROPERTY
@given(st.lists(st.floats(-np.pi, np.pi, exclude_max=True), min_size=1, max_size=60))
def test_float_radians_are_left_unchanged(values):
    """Radians by the sidecar's "Units": "rad" are taken as they are."""
    values = np.array(values)
    np.testing.assert_array_equal(
        phase_to_radians(values, source="p.nii", units="rad", units_from="the sidecar"),
        values)


@PROPERTY
@given(st.lists(st.integers(-3, 3), min_size=2, max_size=60), st.booleans())
def test_integer_typed_radians_are_always_refused(values, given_unit):
    values = np.array(values)
    assume(values.max() > values.min())
    units = dict(units="rad", units_from=OPTION_SOURCE) if given_unit else {}
    with pytest.raises(QSMInputError, match="p.nii.*rounded" if given_unit else "p.nii"):
        phase_to_radians(values, source="p.nii", **units)


@PROPERTY
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                       min_size=1, max_size=40))
def test_any_phase_is_scaled_into_pi_or_refused_by_name(values):
    values = np.array(values, dtype=np.float64)
    try:
        out = phase_to_radians(values, source="p.nii")
    except QSMInputError as err:
        assert str(err).startswith("p.nii: ")
        return
    finite = np.isfinite(values)
    assert np.all(np.isfinite(out[finite]))
    assert np.all(np.abs(out[finite]) <= np.pi)


# --- file names -------------------------------------------------------------------------

LABELS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                 min_size=1, max_size=6)
ENTITY_NAMES = [name for name, _ in CANONICAL_ENTITY_ORDER]


def _valid_value(entity):  # by the schema's format and enum of each entity
    if entity.allowed:
        return st.sampled_from(entity.allowed)
    return st.integers(0, 999).map(str) if entity.pattern == "[0-9]+" else LABELS


ENTITY_VALUES = st.sampled_from(ENTITIES[1:]).flatmap(
    lambda e: st.tuples(st.just(e.name), _valid_value(e) | st.none()))


@PROPERTY
@given(entities=st.lists(ENTITY_VALUES).map(dict), subject=LABELS, suffix=LABELS)
def test_any_entities_give_a_parsable_name_in_canonical_order(entities, subject, suffix):
    entities = {**entities, "subject": subject}
    name = bids_filename(entities, suffix, ".nii.gz")
    assert name.endswith(f"_{suffix}.nii.gz")
    pairs = [part.split("-") for part in name.removesuffix(f"_{suffix}.nii.gz").split("_")]
    assert all(len(pair) == 2 for pair in pairs)
    short = dict(CANONICAL_ENTITY_ORDER)
    expected = [(short[n], entities[n]) for n in ENTITY_NAMES if entities.get(n) is not None]
    assert [tuple(pair) for pair in pairs] == expected
    path = derivative_path("/out", entities, suffix, ".nii.gz")
    folder = ["/", "out", f"sub-{subject}"] + (
        [f"ses-{entities['session']}"] if entities.get("session") else []) + ["anat"]
    assert list(path.parts) == folder + [name]


@PROPERTY
@given(good=LABELS, bad=st.text(min_size=1, max_size=3).filter(
    lambda t: any(not (c.isascii() and c.isalnum()) and c != "+" for c in t)))
def test_labels_that_would_break_a_name_are_refused(good, bad):
    for label in (bad, good + bad, bad + good):
        with pytest.raises(ValueError, match="alphanumeric"):
            bids_filename({"subject": good, "acquisition": label}, "Chimap", ".nii.gz")
