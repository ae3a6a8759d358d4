"""The official BIDS validator (bids-validator-deno): the examples pass it, a dataset with a
known error is refused in one paragraph, and --skip-bids-validation proceeds.

Each validator call takes about 1.5 s, so the tests make few of them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qsmflow.bids.validator import describe_errors, parse_validator_json, validate_input_dataset
from qsmflow.cli.config import EXIT_SOME_FAILED, EXIT_USAGE
from qsmflow.cli.run import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "bids_examples"
PHASE_SIDECAR = "sub-02/anat/sub-02_echo-2_part-phase_MEGRE.json"


@pytest.fixture
def examples_copy(tmp_path):
    """The raw example dataset (8 MB), without its ground truth."""
    return Path(shutil.copytree(EXAMPLES, tmp_path / "bids",
                                ignore=shutil.ignore_patterns("derivatives")))


def test_examples_pass_with_only_documented_warnings():
    """The raw example and its ground truth: 0 errors, and every kind of warning is listed
    with its reason in docs/bids_validation.md (the script CI runs)."""
    for args in ([str(EXAMPLES)], ["--derivative", str(EXAMPLES / "derivatives" / "groundtruth")]):
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "validate_bids.py"), *args],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert " 0 error(s)" in done.stdout and "0 undocumented" in done.stdout


def test_a_participant_with_an_error_is_left_out_and_named(examples_copy):
    sidecar = examples_copy / PHASE_SIDECAR
    content = json.loads(sidecar.read_text())
    del content["Units"]  # BIDS requires Units on part-phase images
    sidecar.write_text(json.dumps(content))
    validation = validate_input_dataset(examples_copy)
    assert set(validation.refused) == {"02"}
    paragraph = validation.refused["02"]
    assert "\n" not in paragraph
    for part in ("SIDECAR_KEY_REQUIRED (Units)", "sub-02_echo-2_part-phase_MEGRE.nii.gz",
                 "--skip-bids-validation", "sub-02 was left out"):
        assert part in paragraph
    assert len(validation.result.errors) == 1
    # Errors of a participant that is not selected do not concern the run.
    assert validate_input_dataset(examples_copy, participant_labels=("01",)).refused == {}


def test_an_invalid_dataset_is_refused_before_anything_is_computed(examples_copy, tmp_path,
                                                                   capsys):
    """A file BIDS does not know at the root (the issue's NOT_INCLUDED) refuses the dataset:
    exit 2, one paragraph, no output or work folder; --skip-bids-validation goes on to the
    runs (which fail here at the first per-run check, without computing)."""
    (examples_copy / "make_bids_examples.py").write_text("print('not BIDS')\n")
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(examples_copy), str(out), "participant", "-w", str(work)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("qsmflow: error: BIDS_DIR ")
    for part in ("NOT_INCLUDED", "make_bids_examples.py", "--skip-bids-validation",
                 "Nothing was computed"):
        assert part in err
    assert not out.exists() and not work.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    code = main([str(examples_copy), str(out), "participant", "-w", str(work),
                 "--skip-bids-validation", "--inversion", "tkd", "--participant-label", "01",
                 "--brain-mask-dir", str(empty), "--roi-labels-dir", str(empty)])
    assert code == EXIT_SOME_FAILED  # past validation: the run's own input check failed
    (summary,) = (out / "logs").glob("qsmflow_*_summary.json")
    failed = json.loads(summary.read_text())["failed"]
    assert list(failed) == ["sub-01"] and "--brain-mask-dir" in failed["sub-01"]


def test_every_participant_refused_fails_each_as_a_run(examples_copy):
    """Validator errors in participants' files refuse those participants, each with its own
    paragraph, as any other problem of one participant does (exit 1 through the summary),
    even when none is left; only the dataset's own files make it a usage error."""
    for sidecar in examples_copy.glob("sub-*/anat/*_part-phase_MEGRE.json"):
        content = json.loads(sidecar.read_text())
        del content["Units"]
        sidecar.write_text(json.dumps(content))
    from qsmflow.cli.run import _validate_bids_dir  # the gate main() runs

    class Config:  # only the fields the gate reads
        skip_bids_validation = False
        bids_dir = examples_copy
        participant_label = ()

    refused = _validate_bids_dir(Config)
    assert sorted(refused) == ["01", "02"]
    for label, why in refused.items():
        assert "found 3 errors" in why and f"sub-{label}_echo-1_part-phase" in why, why
    Config.skip_bids_validation = True
    assert _validate_bids_dir(Config) == {}


def test_the_paragraph_groups_errors_by_kind():
    """Parsing the validator's JSON (a recorded excerpt) and describing it, without running
    the validator."""
    report = {"issues": {"issues": [
        {"code": "SIDECAR_KEY_REQUIRED", "subCode": "Units", "severity": "error",
         "location": f"/sub-01/anat/sub-01_echo-{e}_part-phase_MEGRE.nii.gz"}
        for e in (1, 2, 3, 4)] + [
        {"code": "README_FILE_MISSING", "severity": "warning",
         "location": "/dataset_description.json"}],
        "codeMessages": {"SIDECAR_KEY_REQUIRED": "A data file's JSON sidecar is missing a key "
                         "listed as required.\n"}},
        "summary": {"schemaVersion": "1.2.7"}}
    result = parse_validator_json(json.dumps(report), "bids-validator-deno 3.0.2")
    assert (len(result.errors), len(result.warnings), result.schema_version) == (4, 1, "1.2.7")
    text = describe_errors(result, Path("/data/bids"))
    assert ("found 4 errors: SIDECAR_KEY_REQUIRED (Units), a data file's JSON sidecar is "
            "missing a key listed as required, in sub-01/anat/sub-01_echo-1_part-phase_MEGRE"
            ".nii.gz, sub-01/anat/sub-01_echo-2_part-phase_MEGRE.nii.gz and 2 more file(s).") \
        in text

