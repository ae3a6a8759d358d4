"""Nothing is lost: the input is never touched, outputs appear whole or not at all, and
every failure is listed at the end of the run and in its machine-readable summary."""

import json
import os

import pytest

from qsmflow.interfaces.derivatives import DerivativesSink

from .datasets import checksums, derivative_files


def test_bids_dir_is_never_modified(mixed_run):
    """Content, modes and modification times of every file and folder are unchanged."""
    assert mixed_run["after"] == mixed_run["before"]
    assert len(mixed_run["before"]) > 50


def test_failed_runs_leave_no_derivatives(mixed_run):
    out = mixed_run["out"]
    for sub in ("weak", "note"):
        assert not (out / f"sub-{sub}").exists()
        assert not [p for p in out.rglob(f"sub-{sub}_*") if p.suffix in (".gz", ".csv",
                                                                          ".json", ".tsv")]
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_successful_runs_have_every_derivative(mixed_run):
    expected = {"anat/Chimap.json", "anat/Chimap.nii.gz", "anat/desc-brain_mask.json",
                "anat/desc-brain_mask.nii.gz", "anat/desc-deepgm_chistats.csv",
                "anat/desc-qsm_mask.json", "anat/desc-qsm_mask.nii.gz",
                "anat/space-orig_desc-deepgm_dseg.json",
                "anat/space-orig_desc-deepgm_dseg.nii.gz", "anat/space-orig_desc-deepgm_dseg.tsv",
                "fmap/desc-local_fieldmap.json", "fmap/desc-local_fieldmap.nii.gz",
                "fmap/desc-total_fieldmap.json", "fmap/desc-total_fieldmap.nii.gz",
                "fmap/magnitude.json", "fmap/magnitude.nii.gz"}
    for sub in ("01", "02", "uint", "nan", "single", "nob0"):
        names = {n.replace(f"sub-{sub}_", "", 1)
                 for n in derivative_files(mixed_run["out"], sub)}
        assert names == expected, sub


def test_outputs_are_readable_by_others_as_the_umask_allows(mixed_run):
    """Temporary files are created 0600; the renamed outputs must not stay so."""
    umask = os.umask(0)
    os.umask(umask)
    chimap = mixed_run["out"] / "sub-01" / "anat" / "sub-01_Chimap.nii.gz"
    description = mixed_run["out"] / "dataset_description.json"
    for path in (chimap, chimap.with_suffix("").with_suffix(".json"), description):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_failures_are_listed_at_the_end_and_in_the_summary(mixed_run):
    result = mixed_run["result"]
    (summary_file,) = (mixed_run["out"] / "logs").glob("qsmflow_*_summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary == result.summary
    assert set(summary) >= {"started", "finished", "succeeded", "failed", "config"}
    assert (mixed_run["out"] / "logs" / summary["config"]).is_file()
    tail = result.stdout[result.stdout.index("done: 7 run(s) succeeded, 3 failed"):]
    for label, message in summary["failed"].items():
        assert f"FAILED {label}: {message.splitlines()[0]}" in tail
    assert "EchoTime" in summary["failed"]["sub-note"]


def _sink(tmp_path, n_files=4):
    sources = []
    for i in range(n_files):
        sources.append(tmp_path / f"source{i}.nii.gz")
        sources[-1].write_bytes(bytes([i]) * 1000)
    out = tmp_path / "out"
    sink = DerivativesSink(
        in_files=[str(s) for s in sources], out_dir=str(out),
        out_paths=[f"sub-01/anat/sub-01_desc-{i}_Chimap.nii.gz" if i == 0 else
                   f"sub-01/anat/sub-01_desc-x{i}_mask.nii.gz" for i in range(n_files)],
        sidecars=[{"Units": "ppm"}] + [{}] * (n_files - 1),
        chimap_metadata={"DipoleInversionMethod": "tkd"})
    return sink, sources, out


def test_sink_writes_all_files_or_none(tmp_path):
    sink, sources, out = _sink(tmp_path)
    sources[-1].unlink()  # the last copy fails, as a full disk or a vanished file would
    with pytest.raises(FileNotFoundError):
        sink.run(cwd=str(tmp_path))
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_sink_replaces_previous_outputs_whole(tmp_path):
    sink, sources, out = _sink(tmp_path)
    sink.run(cwd=str(tmp_path))
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == 5  # four images and the Chimap sidecar
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-0_Chimap.json").read_text())
    assert sidecar == {"Units": "ppm", "DipoleInversionMethod": "tkd"}
    before = checksums(out)
    sources[1].write_bytes(b"new")  # a rerun whose sink fails keeps the old set intact
    sources[2].unlink()
    with pytest.raises(FileNotFoundError):
        sink.run(cwd=str(tmp_path))
    assert {k: v[0] for k, v in checksums(out).items()} == {k: v[0] for k, v in before.items()}

