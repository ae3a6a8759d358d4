import pytest
from bidsschematools.schema import load_schema
from hypothesis import given
from hypothesis import strategies as st

from qsmflow.bids.naming import (
    CANONICAL_ENTITY_ORDER,
    ENTITIES,
    KNOWN_ENTITIES,
    TRANSFORM_ENTITIES,
    bids_filename,
    bids_label,
    derivative_path,
    parse_label,
)

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                min_size=1, max_size=8)


def test_canonical_order_regardless_of_dict_order():
    entities = {"run": "2", "description": "local", "subject": "01", "acquisition": "fast",
                "session": "pre"}
    assert bids_filename(entities, "fieldmap", ".nii.gz") == \
        "sub-01_ses-pre_acq-fast_run-2_desc-local_fieldmap.nii.gz"


def test_none_entities_are_left_out_and_path_has_session_folder(tmp_path):
    path = derivative_path(tmp_path, {"subject": "01", "session": "a", "run": None}, "Chimap",
                           ".nii.gz")
    assert path == tmp_path / "sub-01" / "ses-a" / "anat" / "sub-01_ses-a_Chimap.nii.gz"


@pytest.mark.parametrize("bad", [{"subject": "0_1"}, {"subject": ""}, {"session": "1"},
                                 {"subject": "01", "colour": "red"},
                                 {"subject": "01", "run": "2a"}, {"subject": "01", "mt": "yes"},
                                 {"subject": "01", "part": "magnitude"},
                                 {"subject": "01", "hemi": "left"},
                                 {"subject": "01", "desc": "a", "description": "b"},
                                 {"subject": "01", "suffix": "T1w"}])
def test_invalid_entities_are_rejected(bad):
    with pytest.raises(ValueError):
        bids_filename(bad, "Chimap", ".nii.gz")


@given(sub=label, ses=st.none() | label, run=st.none() | st.integers(0, 99).map(str),
       desc=st.none() | label)
def test_round_trip_of_entities(sub, ses, run, desc):
    name = bids_filename({"subject": sub, "session": ses, "run": run, "description": desc},
                         "Chimap", ".nii.gz")
    stem = name.removesuffix("_Chimap.nii.gz")
    pairs = dict(part.split("-", 1) for part in stem.split("_"))
    assert pairs["sub"] == sub
    assert pairs.get("ses") == ses and pairs.get("run") == run and pairs.get("desc") == desc
    assert list(pairs) == [k for k in ("sub", "ses", "run", "desc") if k in pairs]


def test_canonical_order_is_the_schemas_with_the_transform_entities_after_space():
    schema = load_schema()
    expected = [(key, schema.objects.entities[key]["name"]) for key in schema.rules.entities]
    at = [short for _, short in expected].index("space") + 1
    expected[at:at] = list(TRANSFORM_ENTITIES)
    assert list(CANONICAL_ENTITY_ORDER) == expected
    # The order of the BIDS appendix (entity table), written out here as a second source.
    shorts = [short for _, short in CANONICAL_ENTITY_ORDER]
    appendix = ["sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "flip", "inv",
                "mt", "part", "proc", "hemi", "space", "res", "den", "label", "desc"]
    assert [s for s in shorts if s in appendix] == appendix
    assert len(set(shorts)) == len(shorts)


def test_every_key_names_one_entity():
    """Long, short and pybids names never collide across entities."""
    for name, short in CANONICAL_ENTITY_ORDER:
        assert {name, short} <= KNOWN_ENTITIES
    by_name = {e.name: e for e in ENTITIES}
    for entity in ENTITIES:
        for other in ENTITIES:
            if other is not entity:
                assert entity.short != other.name, (entity, other)
    assert by_name["mtransfer"].allowed == ("on", "off")


def test_acquisition_entities_from_discovery_in_schema_order():
    """rec, flip, inv, mt, part, hemi, res, den: any schema entity, by any of its names."""
    entities = {"desc": "local", "den": "2", "res": "1", "hemi": "L", "part": "phase",
                "mt": "on", "inv": 2, "flip": "1", "rec": "mag", "ce": "gd",
                "echo": None, "subject": "01", "inversion": None}
    assert bids_filename(entities, "fieldmap", "nii.gz") == (
        "sub-01_ce-gd_rec-mag_flip-1_inv-2_mt-on_part-phase_hemi-L_res-1_den-2_desc-local"
        "_fieldmap.nii.gz")
    xfm = {"subject": "01", "from_space": "MNI152NLin2009cAsym", "to_space": "orig",
           "mode": "image", "reconstruction": "norm"}
    assert bids_filename(xfm, "xfm", ".h5") == \
        "sub-01_rec-norm_from-MNI152NLin2009cAsym_to-orig_mode-image_xfm.h5"


def test_session_folder_from_a_short_key(tmp_path):
    path = derivative_path(tmp_path, {"sub": "01", "ses": "b"}, "Chimap", ".nii.gz")
    assert path == tmp_path / "sub-01" / "ses-b" / "anat" / "sub-01_ses-b_Chimap.nii.gz"


def test_label_round_trip_with_any_schema_entity():
    label = "sub-01_ses-pre_acq-fast_rec-norm_flip-2_inv-1_mt-off_run-3"
    entities = parse_label(label)
    assert entities == {"subject": "01", "session": "pre", "acquisition": "fast",
                        "reconstruction": "norm", "flip": "2", "inversion": "1",
                        "mtransfer": "off", "run": "3"}
    assert bids_label(entities) == "sub-01_ses-pre_acq-fast_rec-norm_run-3_flip-2_inv-1_mt-off"
    for bad in ("ses-pre", "sub-01_colour-red", "sub-01_run-a", "sub-01_sub-02", "sub01"):
        with pytest.raises(ValueError):
            parse_label(bad)
