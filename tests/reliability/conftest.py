"""Shared data of the reliability tests: a coarse copy of the examples, built once, and one
pipeline run over a dataset whose participants each carry a quirk of real data."""

import shutil

import pytest

from .datasets import (
    add_nonfinite_voxels,
    add_subject,
    checksums,
    decimate_examples,
    edit_all_sidecars,
    keep_single_echo,
    phase_to_integer_degrees,
    phase_to_unsigned_units,
    run_qsmflow,
    signal_in_one_voxel,
)

# participant -> what is special about its data, and how the run must end for it
MIXED_PARTICIPANTS = {
    "01": "the example as shipped (phase in -4096..4094 scanner units, 12 bits)",
    "02": "the oblique example as shipped",
    "uint": "sub-01 with phase in 0..4095 scanner units (uint16): must work",
    "deg": "sub-01 with phase in whole degrees -180..180 (int16): must work",
    "nan": "sub-01 with NaN/Inf voxels in the first echo: must work, with a warning",
    "single": "sub-01's first echo only, as a single-echo T2starw run: must work",
    "nob0": "sub-02 without MagneticFieldStrength, run with --b0-tesla 3: must work",
    "weak": "sub-01 with signal in one voxel only: fails at the brain mask stage",
    "note": "sub-01 without EchoTime: fails at validation, before any computation",
    "badjson": "sub-01 with a sidecar that is not valid JSON: left out, the others run",
}


@pytest.fixture(scope="session")
def coarse(tmp_path_factory):
    """``(bids_dir, roi_labels_dir)``: bids_examples at 4 mm, built once per session."""
    return decimate_examples(tmp_path_factory.mktemp("coarse"))


@pytest.fixture
def bids(coarse, tmp_path):
    """A fresh 4 mm copy of the examples (sub-01, sub-02) for one test to break."""
    return shutil.copytree(coarse[0], tmp_path / "bids")


@pytest.fixture(scope="session")
def mixed_run(coarse, tmp_path_factory):
    """One run over all of ``MIXED_PARTICIPANTS``, one node at a time (``--plugin Linear``:
    the reference of the parallel tests, and no scheduler polling delays)."""
    tmp = tmp_path_factory.mktemp("mixed")
    bids = shutil.copytree(coarse[0], tmp / "bids")
    labels = shutil.copytree(coarse[1], tmp / "labels")
    for new, source in (("uint", "01"), ("deg", "01"), ("nan", "01"), ("single", "01"),
                        ("nob0", "02"), ("weak", "01"), ("note", "01"), ("badjson", "01")):
        add_subject(bids, source, new, labels)
    phase_to_unsigned_units(bids, "uint")
    phase_to_integer_degrees(bids, "deg")
    (bids / "sub-badjson" / "anat" / "sub-badjson_echo-2_part-mag_MEGRE.json").write_text(
        '{"EchoTime": 0.01,')
    n_nonfinite = add_nonfinite_voxels(bids, "nan")
    keep_single_echo(bids, "single")
    edit_all_sidecars(bids, "nob0", MagneticFieldStrength=None)
    signal_in_one_voxel(bids, "weak")
    edit_all_sidecars(bids, "note", EchoTime=None)
    before = checksums(bids)
    out = tmp / "out"
    result = run_qsmflow(bids, out, "--b0-tesla", "3", "--roi-labels-dir", labels,
                         "--plugin", "Linear", "--omp-nthreads", "1", work=tmp / "work")
    return {"result": result, "bids": bids, "labels": labels, "out": out, "work": tmp / "work",
            "before": before, "after": checksums(bids), "n_nonfinite": n_nonfinite}
