import pytest

from qsmflow.bids.discovery import find_gre_runs
from qsmflow.bids.errors import QSMInputError


def test_multi_echo_runs_with_sessions(skeleton):
    root = skeleton(subjects=("01", "02"), sessions=("pre", "post"), n_echoes=3)
    discovery = find_gre_runs(root)
    assert not discovery.failures
    assert [r.label for r in discovery.runs] == [
        "sub-01_ses-post", "sub-01_ses-pre", "sub-02_ses-post", "sub-02_ses-pre"]
    run = discovery.runs[0]
    assert run.echo_times_s == (0.004, 0.008, 0.012) and run.b0_t == 3.0
    assert [p.split("_echo-")[1][0] for p in run.phase_files] == ["1", "2", "3"]


def test_single_echo_t2starw(skeleton):
    discovery = find_gre_runs(skeleton(n_echoes=1, suffix="T2starw"))
    (run,) = discovery.runs
    assert run.suffix == "T2starw" and len(run.magnitude_files) == 1
    assert any("single echo" in w for w in run.warnings)


def test_participant_and_session_selection(skeleton):
    root = skeleton(subjects=("01", "02"), sessions=("a", "b"))
    runs = find_gre_runs(root, participant_labels=["sub-02"], session_labels=["b"]).runs
    assert [r.label for r in runs] == ["sub-02_ses-b"]


def test_unknown_participant_is_an_error(skeleton):
    with pytest.raises(QSMInputError, match="07 not found.*Available: 01"):
        find_gre_runs(skeleton(), participant_labels=["07"])


def test_not_a_bids_dataset(tmp_path):
    with pytest.raises(QSMInputError, match="no dataset_description.json"):
        find_gre_runs(tmp_path)


def test_missing_echo_time_names_the_file_and_spares_other_subjects(skeleton):
    root = skeleton(subjects=("01", "02"), sidecar_overrides={
        "sub-02_echo-2_part-phase_MEGRE": {"EchoTime": None},
        "sub-02_echo-2_part-mag_MEGRE": {"EchoTime": None}})
    discovery = find_gre_runs(root)
    assert [r.label for r in discovery.runs] == ["sub-01"]
    assert "sub-02_echo-2_part-phase_MEGRE.nii.gz" in discovery.failures["sub-02"]
    assert "EchoTime" in discovery.failures["sub-02"]


def test_echo_time_in_milliseconds_is_explained(skeleton):
    root = skeleton(sidecar_overrides={"sub-01_echo-1_part-phase_MEGRE": {"EchoTime": 4.0},
                                       "sub-01_echo-1_part-mag_MEGRE": {"EchoTime": 4.0}})
    assert "milliseconds" in find_gre_runs(root).failures["sub-01"]


def test_missing_field_strength_needs_b0_option(skeleton):
    overrides = {f"sub-01_echo-{e}_part-{p}_MEGRE": {"MagneticFieldStrength": None}
                 for e in (1, 2, 3) for p in ("mag", "phase")}
    root = skeleton(sidecar_overrides=overrides)
    assert "--b0-tesla" in find_gre_runs(root).failures["sub-01"]
    (run,) = find_gre_runs(root, b0_tesla_override=7.0).runs
    assert run.b0_t == 7.0


def test_conflicting_b0_option_is_an_error(skeleton):
    failures = find_gre_runs(skeleton(), b0_tesla_override=7.0).failures
    assert "conflicts" in failures["sub-01"]


def test_echo_gap_and_count_mismatch(skeleton):
    gap = skeleton(drop=("sub-01_echo-2_part-mag_MEGRE", "sub-01_echo-2_part-phase_MEGRE"))
    assert "gaps" in find_gre_runs(gap).failures["sub-01"]


def test_magnitude_phase_mismatch(skeleton):
    root = skeleton(drop=("sub-01_echo-3_part-phase_MEGRE",))
    assert "differ" in find_gre_runs(root).failures["sub-01"]


def test_no_gre_data_at_all(skeleton, tmp_path):
    root = skeleton()
    for f in root.rglob("*_MEGRE.*"):
        f.unlink()
    with pytest.raises(QSMInputError, match="no multi-echo GRE data"):
        find_gre_runs(root)
