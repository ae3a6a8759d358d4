import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsmflow.bids.naming import bids_filename, derivative_path

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
                                 {"subject": "01", "colour": "red"}])
def test_invalid_entities_are_rejected(bad):
    with pytest.raises(ValueError):
        bids_filename(bad, "Chimap", ".nii.gz")


@given(sub=label, ses=st.none() | label, run=st.none() | label, desc=st.none() | label)
def test_round_trip_of_entities(sub, ses, run, desc):
    name = bids_filename({"subject": sub, "session": ses, "run": run, "description": desc},
                         "Chimap", ".nii.gz")
    stem = name.removesuffix("_Chimap.nii.gz")
    pairs = dict(part.split("-", 1) for part in stem.split("_"))
    assert pairs["sub"] == sub
    assert pairs.get("ses") == ses and pairs.get("run") == run and pairs.get("desc") == desc
    assert list(pairs) == [k for k in ("sub", "ses", "run", "desc") if k in pairs]
