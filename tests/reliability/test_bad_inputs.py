"""The catalogue of bad inputs (docs/bad_inputs.md): each case is built from the examples,
broken in one way, and must end either handled correctly or with one paragraph that names
the file or field, the problem and the fix, with the documented exit code:
0 all OK, 1 some runs failed (the others go on), 2 usage or input error (nothing computed).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmflow.cli.config import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

from .datasets import (
    assert_one_paragraph,
    checksums,
    edit_all_sidecars,
    edit_sidecar,
    gre_file,
    load_array,
    rewrite_nifti,
    run_qsmflow,
)


def expect_run_failure(result, label, *words):
    """Exit 1, the run listed as failed (log and summary) with a message holding
    ``words``, and no traceback anywhere."""
    assert result.code == EXIT_SOME_FAILED, result.stdout + result.stderr
    message = result.summary["failed"][label]
    for word in words:
        assert word in message, message
    assert_one_paragraph(message)
    assert "Traceback" not in result.stdout + result.stderr
    assert f"FAILED {label}: " in result.stdout
    return message


def expect_usage_error(result, *words):
    """Exit 2 and one paragraph on stderr holding ``words``."""
    assert result.code == EXIT_USAGE, result.stdout + result.stderr
    assert result.stderr.startswith("qsmflow: error: ")
    for word in words:
        assert word in result.stderr, result.stderr
    assert_one_paragraph(result.stderr)
    assert "Traceback" not in result.stdout
    return result.stderr


def run_sub01(bids, tmp_path, *options):
    return run_qsmflow(bids, tmp_path / "out", "--participant-label", "01",
                       "--plugin", "Linear", *options)


def remove_echo(bids, sub, echo, parts=("mag", "phase")):
    for part in parts:
        for ext in (".nii.gz", ".json"):
            gre_file(bids, sub, echo, part, ext=ext).unlink()


# --- sidecar metadata -------------------------------------------------------------------

def test_missing_echo_time(bids, tmp_path):
    for part in ("mag", "phase"):
        edit_sidecar(gre_file(bids, "01", 2, part), EchoTime=None)
    message = expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "EchoTime",
                                 "sub-01_echo-2_part-phase_MEGRE.nii.gz", "Add")
    assert "seconds" in message
    assert not (tmp_path / "out" / "sub-01").exists()


def test_echo_time_in_milliseconds(bids, tmp_path):
    for echo, te_ms in ((1, 4.0), (2, 10.0), (3, 16.0)):
        for part in ("mag", "phase"):
            edit_sidecar(gre_file(bids, "01", echo, part), EchoTime=te_ms)
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "EchoTime=4.0", "milliseconds")


def test_echo_time_with_units_as_text(bids, tmp_path):
    edit_sidecar(gre_file(bids, "01", 1, "phase"), EchoTime="4 ms")
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "EchoTime='4 ms'",
                       "plain JSON number in seconds")


def test_missing_field_strength_needs_b0_option(bids, tmp_path):
    edit_all_sidecars(bids, "01", MagneticFieldStrength=None)
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "MagneticFieldStrength",
                       "--b0-tesla")
    # With --b0-tesla the run is valid; the full run is in mixed_run (sub-nob0).


def test_b0_option_conflicting_with_sidecars(bids, tmp_path):
    expect_run_failure(run_sub01(bids, tmp_path, "--b0-tesla", "7"), "sub-01", "--b0-tesla 7",
                       "conflicts", "MagneticFieldStrength=3.0")


def test_malformed_json_sidecar(bids, tmp_path):
    """sub-01 is left out with the file named; the dataset goes on: sub-02 is still
    checked (and fails on its own problem, an all-zero magnitude, so that nothing needs
    computing here; ``test_malformed_json_sidecar_leaves_out_one_participant`` shows the
    others processed)."""
    sidecar = gre_file(bids, "01", 1, "phase", ext=".json")
    sidecar.write_text('{"EchoTime": 0.004,')
    magnitude = gre_file(bids, "02", 1, "mag")
    rewrite_nifti(magnitude, data=np.zeros_like(load_array(magnitude)))
    result = run_qsmflow(bids, tmp_path / "out", "--plugin", "Linear")
    expect_run_failure(result, "sub-01", sidecar.name, "valid JSON", "left out")
    expect_run_failure(result, "sub-02", magnitude.name, "zero everywhere")
    assert not (tmp_path / "out" / "sub-01").exists()


# --- which files make up a run ----------------------------------------------------------

def test_echo_gap(bids, tmp_path):
    remove_echo(bids, "01", 2)
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "echoes [1, 3] have gaps",
                       "echo-1..echo-2")


def test_duplicate_echo(bids, tmp_path):
    """echo-02 and echo-2 are the same echo written twice (e.g. converted twice)."""
    for ext in (".nii.gz", ".json"):
        source = gre_file(bids, "01", 2, "mag", ext=ext)
        shutil.copy(source, str(source).replace("_echo-2_", "_echo-02_"))
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "duplicate magnitude echo(es) 2",
                       "Keep one file per echo")


def test_magnitude_phase_count_mismatch(bids, tmp_path):
    remove_echo(bids, "01", 3, parts=("phase",))
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "magnitude echoes [1, 2, 3]",
                       "phase echoes [1, 2]", "both a part-mag and a part-phase")


def test_magnitude_without_any_phase(bids, tmp_path):
    for echo in (1, 2, 3):
        remove_echo(bids, "01", echo, parts=("phase",))
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "no phase images")


def test_echo_stacked_4d_file(bids, tmp_path):
    """One 4-D file per part (as some converters write), with a list of echo times."""
    echo_times = []
    for part in ("mag", "phase"):
        stack = np.stack([load_array(gre_file(bids, "01", e, part)) for e in (1, 2, 3)], -1)
        affine = nib.load(gre_file(bids, "01", 1, part)).affine
        echo_times = [json.loads(gre_file(bids, "01", e, part, ext=".json").read_text())
                      ["EchoTime"] for e in (1, 2, 3)]
        for echo in (1, 2, 3):
            remove_echo(bids, "01", echo, (part,))
        nib.save(nib.Nifti1Image(stack, affine), gre_file(bids, "01", None, part))
        gre_file(bids, "01", None, part, ext=".json").write_text(json.dumps(
            {"EchoTime": echo_times, "MagneticFieldStrength": 3.0}))
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "is a list", "4-D echo-stacked",
                       "split it into echo-1, echo-2")
    # With a single EchoTime the header check names the 4-D shape instead.
    for part in ("mag", "phase"):
        edit_sidecar(gre_file(bids, "01", None, part), EchoTime=echo_times[0])
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "a 4-D image with 3 volumes",
                       "split it")


# --- image headers and data -------------------------------------------------------------

def test_shape_mismatch_between_echoes(bids, tmp_path):
    path = gre_file(bids, "01", 2, "phase")
    rewrite_nifti(path, data=load_array(path)[:, :, :-4])
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", path.name, "differs from",
                       "share one grid")


def test_affine_mismatch_between_echoes(bids, tmp_path):
    path = gre_file(bids, "01", 3, "mag")
    affine = nib.load(path).affine.copy()
    affine[0, 3] += 4.0  # moved by 4 mm: another acquisition
    rewrite_nifti(path, affine=affine)
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", path.name, "affine differs")


def test_phase_radians_rounded_to_int16(bids, tmp_path):
    for echo in (1, 2, 3):
        path = gre_file(bids, "01", echo, "phase")
        rewrite_nifti(path, data=np.round(load_array(path) / 4096 * np.pi), dtype=np.int16)
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", "integers from -3 to 3",
                       "rounded", "floating-point radians")


def test_phase_in_an_ambiguous_range(bids, tmp_path):
    """Whole degrees over half their range (or Siemens units over 4%): no unit can be told
    from the values, and nothing in the sidecar gives it. (Phase in degrees over the
    whole range works: ``test_phase_in_integer_degrees_works``.)"""
    path = gre_file(bids, "01", 1, "phase")
    rewrite_nifti(path, data=np.round(load_array(path) / 4096 * 90.0), dtype=np.int16)
    message = expect_run_failure(run_sub01(bids, tmp_path), "sub-01", path.name,
                                 "from -90 to 90 (integers)", "50% of degrees -180..180",
                                 "--phase-units {rad,siemens,mrad,deg}")
    assert not (tmp_path / "out" / "sub-01").exists(), message


@pytest.mark.parametrize("echo", [1, 2])
def test_all_zero_magnitude(bids, tmp_path, echo):
    path = gre_file(bids, "01", echo, "mag")
    rewrite_nifti(path, data=np.zeros_like(load_array(path)))
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", path.name, "zero everywhere",
                       "Check the conversion")


def test_truncated_nifti(bids, tmp_path):
    path = gre_file(bids, "01", 2, "phase")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", path.name, "truncated",
                       "Re-convert it")


@pytest.mark.parametrize("content", [b"", b"not a NIfTI image" * 20],
                         ids=["empty", "garbage"])
def test_corrupt_nifti(bids, tmp_path, content):
    path = gre_file(bids, "01", 1, "mag")
    path.write_bytes(content)
    expect_run_failure(run_sub01(bids, tmp_path), "sub-01", path.name,
                       "cannot be read as NIfTI", "re-convert")


def test_brain_mask_on_another_grid(bids, tmp_path):
    masks = tmp_path / "masks" / "sub-01" / "anat"
    masks.mkdir(parents=True)
    source = nib.load(gre_file(bids, "01", 1, "mag"))
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.uint8), source.affine),
             masks / "sub-01_desc-brain_mask.nii.gz")
    expect_run_failure(run_sub01(bids, tmp_path, "--brain-mask-dir", tmp_path / "masks"),
                       "sub-01", "sub-01_desc-brain_mask.nii.gz", "not on the grid",
                       "resample it")


# --- the dataset and the command line ---------------------------------------------------

def test_not_a_bids_directory(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "gre_echo1.nii.gz").write_bytes(b"")
    result = run_qsmflow(folder, tmp_path / "out")
    expect_usage_error(result, "not a BIDS dataset", "dataset_description.json")
    assert not (tmp_path / "out").exists()


def test_bids_dir_does_not_exist(tmp_path):
    expect_usage_error(run_qsmflow(tmp_path / "nowhere", tmp_path / "out"), "does not exist")


def test_no_gre_data(bids, tmp_path):
    for path in sorted(bids.rglob("*_MEGRE.*")):
        path.rename(path.with_name(path.name.replace("_MEGRE", "_T1w")))
    expect_usage_error(run_qsmflow(bids, tmp_path / "out"), "no multi-echo GRE data",
                       "part-mag")


def test_unknown_participant_label(bids, tmp_path):
    result = run_qsmflow(bids, tmp_path / "out", "--participant-label", "sub-07")
    expect_usage_error(result, "07 not found", "Available: 01, 02")
    assert not (tmp_path / "out").exists()


def test_output_dir_inside_bids_dir(bids, tmp_path):
    before = checksums(bids)
    result = run_qsmflow(bids, bids / "qsm", work=tmp_path / "work")
    expect_usage_error(result, "inside BIDS_DIR", "never writes into the input dataset")
    assert checksums(bids) == before


def test_work_dir_inside_bids_dir(bids, tmp_path):
    result = run_qsmflow(bids, tmp_path / "out", work=bids / "work")
    expect_usage_error(result, "work directory", "inside BIDS_DIR")


def test_output_dir_is_a_file(bids, tmp_path):
    (tmp_path / "out").write_text("")
    expect_usage_error(run_qsmflow(bids, tmp_path / "out" / "qsm"), "OUTPUT_DIR",
                       "is a file, not a folder")


def test_output_dir_is_another_raw_dataset(bids, coarse, tmp_path):
    """Arguments swapped or mistyped: OUTPUT_DIR is a raw BIDS dataset. It must not be
    written into (its dataset_description.json least of all)."""
    other = shutil.copytree(coarse[0], tmp_path / "other")
    before = checksums(other)
    result = run_qsmflow(bids, other, "--participant-label", "01", "--plugin", "Linear",
                         work=tmp_path / "work")
    expect_usage_error(result, "not a derivative dataset", "choose another OUTPUT_DIR")
    assert checksums(other) == before


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write to: chmod for normal users, the immutable attribute for
    root (whom permissions do not stop)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_output_dir_unwritable(bids, tmp_path, read_only_dir):
    result = run_qsmflow(bids, read_only_dir / "out", work=tmp_path / "work")
    expect_usage_error(result, f"OUTPUT_DIR {read_only_dir / 'out'} cannot be written",
                       "Choose a folder")
    result = run_qsmflow(bids, tmp_path / "out", work=read_only_dir / "work")
    expect_usage_error(result, "work directory", "cannot be written")


def _custom_atlas(folder: Path, present, listed):
    folder.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    template = np.zeros((24, 24, 24), np.float32)
    template[4:20, 4:20, 4:20] = 100
    labels = np.zeros((24, 24, 24), np.int16)
    for i, index in enumerate(present):
        labels[6 + 4 * i:9 + 4 * i, 8:14, 8:14] = index
    nib.save(nib.Nifti1Image(template, affine), folder / "template.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "labels.nii.gz")
    (folder / "labels.tsv").write_text("index\tname\n" + "".join(
        f"{i}\tregion{i}\n" for i in listed))
    return ["--atlas", folder / "labels.nii.gz", "--atlas-labels", folder / "labels.tsv",
            "--atlas-template", folder / "template.nii.gz"]


def test_custom_atlas_with_missing_labels(bids, tmp_path):
    options = _custom_atlas(tmp_path / "atlas", present=(1, 2), listed=(1, 2, 3))
    result = run_sub01(bids, tmp_path, *options)
    expect_usage_error(result, "labels.tsv", "label(s) 3 do not occur", "labels.nii.gz",
                       "Remove them from the table or fix the atlas")


def test_custom_atlas_incomplete_options(bids, tmp_path):
    options = _custom_atlas(tmp_path / "atlas", present=(1,), listed=(1,))
    expect_usage_error(run_sub01(bids, tmp_path, *options[:4]), "needs all three")


def test_custom_atlas_unreadable_image(bids, tmp_path):
    options = _custom_atlas(tmp_path / "atlas", present=(1,), listed=(1,))
    (tmp_path / "atlas" / "labels.nii.gz").write_bytes(b"\x1f\x8b broken")
    expect_usage_error(run_sub01(bids, tmp_path, *options), "--atlas ",
                       "cannot be read as NIfTI")


# --- failures inside qsmflow itself -----------------------------------------------------

def test_unexpected_error_is_one_paragraph_with_a_crash_report(bids, tmp_path, monkeypatch):
    import qsmflow.bids.discovery

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(qsmflow.bids.discovery, "find_gre_runs", broken)
    (tmp_path / "out").mkdir()
    result = run_sub01(bids, tmp_path)
    assert result.code == EXIT_SOME_FAILED
    assert result.stderr.startswith("qsmflow: unexpected error: RuntimeError: simulated bug")
    assert_one_paragraph(result.stderr)
    (crash,) = (tmp_path / "out" / "logs").glob("qsmflow_*_crash.txt")
    assert str(crash) in result.stderr
    assert "Traceback" in crash.read_text() and "simulated bug" in crash.read_text()


def test_keyboard_interrupt_exits_130_with_one_line(bids, tmp_path, monkeypatch):
    import qsmflow.bids.discovery

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(qsmflow.bids.discovery, "find_gre_runs", interrupted)
    result = run_sub01(bids, tmp_path)
    assert result.code == 130
    assert result.stderr.startswith("qsmflow: interrupted.") and "resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- cases that must work: one shared pipeline run (conftest.mixed_run) -----------------

def chimap(out: Path, sub: str) -> np.ndarray:
    return nib.load(out / f"sub-{sub}" / "anat" / f"sub-{sub}_Chimap.nii.gz").get_fdata()


def test_mixed_run_exit_code_and_summary(mixed_run):
    """Three participants fail (one unreadable, one at validation, one during
    processing); the other seven complete."""
    result = mixed_run["result"]
    assert result.code == EXIT_SOME_FAILED
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(result.summary["succeeded"]) == [
        "sub-01", "sub-02", "sub-deg", "sub-nan", "sub-nob0", "sub-single", "sub-uint"]
    assert sorted(result.summary["failed"]) == ["sub-badjson", "sub-note", "sub-weak"]


def test_malformed_json_sidecar_leaves_out_one_participant(mixed_run):
    """pybids cannot index a participant with invalid JSON: that participant alone is left
    out, its file named in the summary and the log, and the others are processed."""
    result = mixed_run["result"]
    message = result.summary["failed"]["sub-badjson"]
    assert "sub-badjson_echo-2_part-mag_MEGRE.json" in message
    assert "valid JSON" in message and "left out" in message
    assert_one_paragraph(message)
    assert "FAILED sub-badjson: " in result.stdout
    assert not (mixed_run["out"] / "sub-badjson").exists()


def test_phase_in_integer_degrees_works(mixed_run):
    """Whole degrees -180..180 (int16) span all of their range: read as degrees (they were
    read as Siemens units, +-0.138 rad, before): the same chi as sub-01 up to rounding."""
    out = mixed_run["out"]
    reference, degrees = chimap(out, "01"), chimap(out, "deg")
    inside = reference != 0
    assert np.corrcoef(reference[inside], degrees[inside])[0, 1] > 0.99
    np.testing.assert_allclose(np.std(degrees[inside]), np.std(reference[inside]), rtol=0.05)


def test_phase_in_unsigned_scanner_units_works(mixed_run):
    """0..4095 (uint16) is scaled by its known range: the same chi as -4096..4095."""
    out = mixed_run["out"]
    reference, unsigned = chimap(out, "01"), chimap(out, "uint")
    inside = reference != 0
    assert np.corrcoef(reference[inside], unsigned[inside])[0, 1] > 0.99
    # The stored values differ only by rounding to 2*pi/4096, not by a rescaling.
    np.testing.assert_allclose(np.std(unsigned[inside]), np.std(reference[inside]), rtol=0.05)


def test_nonfinite_voxels_work_with_a_warning(mixed_run):
    result = mixed_run["result"]
    n = mixed_run["n_nonfinite"]
    assert f"sub-nan_echo-1_part-phase_MEGRE.nii.gz: {n} NaN/Inf voxels were set to zero" \
        in result.stdout
    chi = chimap(mixed_run["out"], "nan")
    assert np.isfinite(chi).all() and np.count_nonzero(chi) > 1000


def test_single_echo_t2starw_works_end_to_end(mixed_run):
    anat = mixed_run["out"] / "sub-single" / "anat"
    assert (anat / "sub-single_desc-deepgm_chistats.csv").is_file()
    sidecar = json.loads((anat / "sub-single_Chimap.json").read_text())
    assert sidecar["EchoTime"] == [0.004]
    assert "single echo" in mixed_run["result"].stdout
    chi, reference = chimap(mixed_run["out"], "single"), chimap(mixed_run["out"], "01")
    both = (chi != 0) & (reference != 0)
    # One echo at 4 ms is far noisier than three (4 mm grid, TKD). Measured correlation with
    # the three-echo map, default LBV + refinement: 0.32 on the whole-head examples (0.31
    # inside the true brain), 0.44 on the former dark-head ones. A map unrelated to the
    # three-echo one gives about 0.
    assert np.corrcoef(chi[both], reference[both])[0, 1] > 0.25


def test_missing_field_strength_with_b0_option_works(mixed_run):
    sidecar = json.loads((mixed_run["out"] / "sub-nob0" / "anat" /
                          "sub-nob0_Chimap.json").read_text())
    assert sidecar["MagneticFieldStrength"] == 3.0
    # The same data as sub-02 with the field strength from the sidecars: the same chi.
    np.testing.assert_array_equal(chimap(mixed_run["out"], "nob0"),
                                  chimap(mixed_run["out"], "02"))


def test_failure_during_processing_is_one_paragraph(mixed_run):
    message = mixed_run["result"].summary["failed"]["sub-weak"]
    assert message.startswith("stage mask failed: no brain mask")
    assert "signal in 1 of" in message and "--mask-threshold" in message
    crash = Path(message.rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert crash.is_file() and "Traceback" in crash.read_text()
    assert "sub-weak: stage brain mask FAILED" in mixed_run["result"].stdout
    assert_one_paragraph(message)


def test_every_run_exits_zero_when_all_inputs_are_good(mixed_run, tmp_path):
    """Rerunning only the good participants on the same work directory: exit 0."""
    result = run_qsmflow(mixed_run["bids"], tmp_path / "out", "--participant-label", "01",
                         "--roi-labels-dir", mixed_run["labels"], "--plugin", "Linear",
                         work=mixed_run["work"])
    assert result.code == EXIT_OK, result.stdout + result.stderr
    assert result.summary["succeeded"] == ["sub-01"] and result.summary["failed"] == {}
