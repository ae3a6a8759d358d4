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


# --- variants, complex parts, phase units, unreadable sidecars -------------------------

@pytest.mark.parametrize("variant", ["rec", "flip", "inv", "mt"])
def test_variants_are_distinct_runs_named_by_their_entities(skeleton, variant):
    """rec-, flip-, inv- and mt- files of one participant are separate runs (they used to
    collide as 'duplicate echo'), and their entities name the run's derivatives."""
    values = {"rec": ("norm", "raw"), "flip": ("1", "2"), "inv": ("1", "2"),
              "mt": ("off", "on")}[variant]
    root = skeleton(entities=f"_{variant}-{values[0]}")
    skeleton(entities=f"_{variant}-{values[1]}")  # the same tree, the other variant added
    discovery = find_gre_runs(root)
    assert not discovery.failures
    assert [r.label for r in discovery.runs] == [f"sub-01_{variant}-{v}" for v in values]
    long_name = {"rec": "reconstruction"}.get(variant, variant)
    for run, value in zip(discovery.runs, values, strict=True):
        assert run.entities[long_name] == value and run.entities["subject"] == "01"
        assert all(f"_{variant}-{value}_" in p for p in run.magnitude_files + run.phase_files)
        assert len(run.phase_files) == 3


def test_real_and_imaginary_parts_make_a_run(skeleton):
    discovery = find_gre_runs(skeleton(parts=("real", "imag")))
    (run,) = discovery.runs
    assert run.magnitude_files == () and run.phase_files == ()
    assert [p.split("_part-")[1][:4] for p in run.real_files + run.imag_files] == \
        ["real"] * 3 + ["imag"] * 3
    assert run.files[0].endswith("sub-01_echo-1_part-real_MEGRE.nii.gz")
    assert run.echo_times_s == (0.004, 0.008, 0.012)


def test_real_without_imaginary_is_explained(skeleton):
    root = skeleton(parts=("real", "imag"), drop=tuple(
        f"sub-01_echo-{e}_part-imag_MEGRE" for e in (1, 2, 3)))
    assert "no imaginary images" in find_gre_runs(root).failures["sub-01"]


def test_magnitude_and_phase_win_over_real_and_imaginary_with_a_warning(skeleton):
    (run,) = find_gre_runs(skeleton(parts=("mag", "phase", "real", "imag"))).runs
    assert len(run.phase_files) == 3 and run.real_files == ()
    assert any("part-real/part-imag files are there too" in w for w in run.warnings)


def test_phase_units_from_the_option_the_sidecar_or_nothing(skeleton):
    root = skeleton(sidecar_extra={"Manufacturer": "Siemens",
                                   "ConversionSoftware": "dcm2niix"})
    (run,) = find_gre_runs(root).runs
    assert run.phase_units == "siemens" and "dcm2niix" in run.phase_units_from
    (run,) = find_gre_runs(root, phase_units="deg", phase_sign=-1).runs
    assert (run.phase_units, run.phase_units_from, run.phase_sign) == \
        ("deg", "--phase-units", -1)


def test_phase_units_from_bids_units_key(skeleton):
    (run,) = find_gre_runs(skeleton(sidecar_extra={"Units": "rad"})).runs
    assert run.phase_units == "rad" and '"Units": "rad"' in run.phase_units_from
    (run,) = find_gre_runs(skeleton(sidecar_extra={"Units": "arbitrary"})).runs
    assert run.phase_units is None  # arbitrary: the range of the values decides


def test_sidecars_that_disagree_about_the_phase_unit_are_refused(skeleton):
    root = skeleton(sidecar_overrides={"sub-01_echo-2_part-phase_MEGRE": {"Units": "rad"}})
    message = find_gre_runs(root).failures["sub-01"]
    assert "disagree" in message and "--phase-units" in message
    assert "sub-01_echo-2_part-phase_MEGRE.nii.gz" in message


def test_unreadable_sidecar_leaves_out_that_participant_only(skeleton):
    root = skeleton(subjects=("01", "02", "03"))
    bad = root / "sub-02" / "anat" / "sub-02_echo-1_part-phase_MEGRE.json"
    bad.write_text('{"EchoTime": 0.004,')
    discovery = find_gre_runs(root)
    assert [r.label for r in discovery.runs] == ["sub-01", "sub-03"]
    assert list(discovery.failures) == ["sub-02"]
    assert str(bad) in discovery.failures["sub-02"]
    assert "not valid JSON" in discovery.failures["sub-02"]
    # Asked for by name, it is reported the same way; not asked for, it is not mentioned.
    assert list(find_gre_runs(root, participant_labels=["02"]).failures) == ["sub-02"]
    only_01 = find_gre_runs(root, participant_labels=["01"])
    assert only_01.failures == {} and [r.label for r in only_01.runs] == ["sub-01"]


def test_unreadable_top_level_sidecar_stops_the_dataset(skeleton):
    root = skeleton(subjects=("01", "02"))
    (root / "MEGRE.json").write_text("{")
    with pytest.raises(QSMInputError, match="MEGRE.json: not valid JSON.*every participant"):
        find_gre_runs(root)
