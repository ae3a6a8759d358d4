"""Group-level ROI statistics on generated ROI tables with planted effects."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qsmflow.analysis.group import run_group_level
from qsmflow.analysis.group.collect import ROI_TABLE_PATTERN
from qsmflow.analysis.group.univariate import compare_groups

ROI_PAIRS = [
    (roi, hemisphere)
    for roi in (
        "caudate",
        "putamen",
        "globus_pallidus",
        "thalamus",
        "substantia_nigra",
        "red_nucleus",
        "dentate_nucleus",
    )
    for hemisphere in ("left", "right")
]
# Typical deep gray matter susceptibilities relative to whole brain, in ppm.
BASELINE_PPM = {
    "caudate": 0.05,
    "putamen": 0.04,
    "globus_pallidus": 0.15,
    "thalamus": 0.0,
    "substantia_nigra": 0.12,
    "red_nucleus": 0.10,
    "dentate_nucleus": 0.09,
}
HEADER = [
    "participant_id",
    "session",
    "acq",
    "run",
    "roi",
    "hemisphere",
    "label_id",
    "n_voxels",
    "volume_mm3",
    "mean_ppm",
    "median_ppm",
    "std_ppm",
    "p25_ppm",
    "p75_ppm",
    "chi_reference",
    "atlas",
]
BETWEEN_SUBJECT_SD_PPM = 0.01
N_PER_GROUP = 12
GP_EFFECT_PPM = 0.05
ALPHA = 0.05


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def write_roi_table(
    out_dir: Path,
    participant: str,
    mean_ppm: dict,
    *,
    session: str = "",
    chi_reference: str = "whole_brain",
    drop_column: str | None = None,
) -> Path:
    """Write one participant-level ROI table the way the participant level lays it out."""
    anat = out_dir / participant / (f"ses-{session}" if session else "") / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    stem = participant + (f"_ses-{session}" if session else "")
    path = anat / f"{stem}_desc-deepgm_chistats.csv"
    rows = []
    for label_id, pair in enumerate(ROI_PAIRS, start=1):
        mean = mean_ppm[pair]
        rows.append(
            [
                participant,
                session,
                "",
                "",
                *pair,
                label_id,
                120,
                120.0,
                mean,
                mean + 0.001,
                0.02,
                mean - 0.01,
                mean + 0.01,
                chi_reference,
                "AAL3+dentate",
            ]
        )
    header = [c for c in HEADER if c != drop_column]
    keep = [i for i, c in enumerate(HEADER) if c != drop_column]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[row[i] for i in keep] for row in rows])
    return path


def write_participants(path: Path, rows: list[dict]) -> Path:
    table = pd.DataFrame(rows)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


def random_values(
    rng, *, shift_ppm: dict | None = None, age_slope_ppm_per_year=None, age_years: float = 0.0
) -> dict:
    """ROI means: baseline + shift + slope * age + between-subject noise."""
    shift_ppm = shift_ppm or {}
    age_slope_ppm_per_year = age_slope_ppm_per_year or {}
    return {
        (roi, hemi): BASELINE_PPM[roi]
        + shift_ppm.get(roi, 0.0)
        + age_slope_ppm_per_year.get(roi, 0.0) * age_years
        + rng.normal(0.0, BETWEEN_SUBJECT_SD_PPM)
        for roi, hemi in ROI_PAIRS
    }


def make_two_groups(tmp_path: Path, rng, *, effect_ppm: float) -> tuple[Path, Path]:
    """12 controls and 12 patients; patients' globus pallidus is higher by effect_ppm."""
    out_dir = tmp_path / "derivatives"
    rows = []
    for i in range(2 * N_PER_GROUP):
        pid = f"sub-{i + 1:02d}"
        group = "control" if i < N_PER_GROUP else "patient"
        shift = {"globus_pallidus": effect_ppm} if group == "patient" else {}
        write_roi_table(out_dir, pid, random_values(rng, shift_ppm=shift))
        rows.append({"participant_id": pid, "group": group})
    tsv = write_participants(tmp_path / "participants.tsv", rows)
    return out_dir, tsv


def test_tables_are_correct_with_sessions(tmp_path, rng):
    out_dir = tmp_path / "derivatives"
    scans = [("sub-01", "1"), ("sub-01", "2"), ("sub-02", "1"), ("sub-03", "1")]
    planted = {scan: random_values(rng) for scan in scans}
    for (pid, ses), values in planted.items():
        write_roi_table(out_dir, pid, values, session=ses)
    tsv = write_participants(
        tmp_path / "participants.tsv",
        [
            {"participant_id": "sub-01", "age": 30, "sex": "F"},
            {"participant_id": "sub-02", "age": None, "sex": "M"},
            {"participant_id": "sub-03", "age": 50, "sex": "F"},
        ],
    )

    result = run_group_level(out_dir, tsv)

    assert len(result.long_table) == len(scans) * len(ROI_PAIRS)
    assert {"age", "sex"} <= set(result.long_table.columns)
    wide = result.wide_table
    roi_columns = [f"{roi}_{hemi}" for roi, hemi in ROI_PAIRS]
    bilateral_columns = [f"{roi}_bilateral" for roi in BASELINE_PPM]
    reference_columns = ["chi_reference", "chi_reference_ppm", "ref_whole_brain_ppm",
                         "ref_csf_ppm", "ref_wm_ppm", "mask_volume_mm3",
                         "registration_similarity"]
    assert list(wide.columns) == [
        "participant_id",
        "session",
        "acq",
        "run",
        *roi_columns,
        *bilateral_columns,
        *reference_columns,
        "age",
        "sex",
    ]
    assert (wide["chi_reference"] == "whole_brain").all()
    # Equal voxel counts in the two hemispheres: the bilateral mean is their average.
    np.testing.assert_allclose(wide["caudate_bilateral"],
                               (wide["caudate_left"] + wide["caudate_right"]) / 2, rtol=1e-12)
    wide = wide.set_index(["participant_id", "session"])
    assert wide.loc[("sub-01", "2"), "putamen_right"] == pytest.approx(
        planted[("sub-01", "2")][("putamen", "right")], abs=1e-12
    )
    assert wide.loc[("sub-03", "1"), "dentate_nucleus_left"] == pytest.approx(
        planted[("sub-03", "1")][("dentate_nucleus", "left")], abs=1e-12
    )
    assert wide.loc[("sub-01", "1"), "age"] == 30
    assert np.isnan(wide.loc[("sub-02", "1"), "age"])

    summary = result.summary.set_index(["roi", "hemisphere"])
    for pair in [("caudate", "left"), ("globus_pallidus", "right"), ("red_nucleus", "left")]:
        x = np.array([planted[scan][pair] for scan in scans])
        row = summary.loc[pair]
        assert row["n"] == len(scans)
        assert row["n_participants"] == 3
        assert row["mean"] == pytest.approx(np.mean(x), abs=1e-12)
        assert row["sd"] == pytest.approx(np.std(x, ddof=1), abs=1e-12)
        assert row["iqr"] == pytest.approx(row["q75"] - row["q25"])

    group_dir = out_dir / "group"
    on_disk = pd.read_csv(group_dir / "group_desc-deepgm_wide.csv")
    assert on_disk.shape == result.wide_table.shape
    # Only two numeric ages: no regression, and the reason is the only note.
    assert result.age_regression is None
    assert len(result.skipped) == 1 and result.skipped[0].startswith("age regression: 2 ")
    assert (group_dir / "group_desc-deepgm_skipped.txt").read_text() == result.skipped[0] + "\n"
    assert not (group_dir / "group_desc-deepgm_age.csv").exists()
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in group_dir.iterdir()) == sorted(p.name for p in result.written)


def test_planted_group_difference_is_detected(tmp_path, rng):
    out_dir, tsv = make_two_groups(tmp_path, rng, effect_ppm=GP_EFFECT_PPM)

    result = run_group_level(out_dir, tsv, group_by="group", alpha=ALPHA)

    table = result.comparisons
    assert len(table) == len(ROI_PAIRS)
    assert set(zip(table["group_a"], table["group_b"], strict=True)) == {("control", "patient")}
    assert (table["n_a"] == N_PER_GROUP).all() and (table["n_b"] == N_PER_GROUP).all()
    gp = table[table["roi"] == "globus_pallidus"]
    assert (gp["welch_p_fdr"] < 0.01).all()
    assert (gp["mannwhitney_p_fdr"] < 0.01).all()
    assert gp["significant_fdr"].all()
    difference_ppm = gp["mean_b"] - gp["mean_a"]
    assert np.allclose(difference_ppm, GP_EFFECT_PPM, atol=0.3 * GP_EFFECT_PPM)
    assert (gp["welch_t"] < 0).all()  # control - patient
    assert not table.loc[table["roi"] != "globus_pallidus", "significant_fdr"].any()

    on_disk = pd.read_csv(out_dir / "group" / "group_desc-deepgm_comparison.csv")
    assert list(on_disk.columns[:15]) == [
        "roi",
        "hemisphere",
        "group_a",
        "group_b",
        "n_a",
        "n_b",
        "mean_a",
        "mean_b",
        "welch_t",
        "welch_p",
        "mannwhitney_u",
        "mannwhitney_p",
        "welch_p_fdr",
        "mannwhitney_p_fdr",
        "significant_fdr",
    ]

    png = out_dir / "group" / "group_desc-deepgm_boxplot.png"
    svg = out_dir / "group" / "group_desc-deepgm_boxplot.svg"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in svg.read_text()


def test_null_case_has_no_significant_roi(tmp_path, rng):
    out_dir, tsv = make_two_groups(tmp_path, rng, effect_ppm=0.0)

    result = run_group_level(out_dir, tsv, group_by="group", alpha=ALPHA)

    assert result.comparisons["welch_p_fdr"].min() > ALPHA
    assert result.comparisons["mannwhitney_p_fdr"].min() > ALPHA
    assert not result.comparisons["significant_fdr"].any()


def test_fdr_controls_familywise_error_under_the_null(rng):
    """With no effect anywhere, FDR = FWER: at most ~alpha of datasets have any hit."""
    n_datasets = 200
    ids = [f"sub-{i:02d}" for i in range(2 * N_PER_GROUP)]
    groups = pd.Series(["a"] * N_PER_GROUP + ["b"] * N_PER_GROUP, index=ids)
    columns = pd.MultiIndex.from_tuples(ROI_PAIRS)
    any_hit = 0
    for _ in range(n_datasets):
        values = pd.DataFrame(
            rng.normal(size=(len(ids), len(ROI_PAIRS))), index=ids, columns=columns
        )
        any_hit += compare_groups(values, groups, alpha=ALPHA)["significant_fdr"].any()
    # Binomial(200, 0.05) exceeds 18 with probability < 1 %.
    assert any_hit / n_datasets <= 0.09


def test_more_than_two_groups_compares_all_pairs(tmp_path, rng):
    out_dir = tmp_path / "derivatives"
    rows = []
    for i, group in enumerate(["x", "y", "z"] * 4):
        pid = f"sub-{i + 1:02d}"
        write_roi_table(out_dir, pid, random_values(rng))
        rows.append({"participant_id": pid, "site": group})
    rows.append({"participant_id": "sub-13", "site": None})
    write_roi_table(out_dir, "sub-13", random_values(rng))
    tsv = write_participants(tmp_path / "participants.tsv", rows)

    table = run_group_level(out_dir, tsv, group_by="site").comparisons

    pairs = set(zip(table["group_a"], table["group_b"], strict=True))
    assert pairs == {("x", "y"), ("x", "z"), ("y", "z")}
    assert len(table) == 3 * len(ROI_PAIRS)
    # One Benjamini-Hochberg family over every test, not one per pair.
    expected = stats.false_discovery_control(table["welch_p"].to_numpy(), method="bh")
    np.testing.assert_allclose(table["welch_p_fdr"], expected)
    assert (table["n_a"] + table["n_b"] == 8).all()  # sub-13 (site n/a) left out


def test_age_regression_recovers_planted_slope(tmp_path, rng):
    out_dir = tmp_path / "derivatives"
    slope_ppm_per_year = 0.002
    rows = []
    for i, age in enumerate(rng.uniform(20.0, 80.0, size=30)):
        pid = f"sub-{i + 1:02d}"
        values = random_values(
            rng, age_slope_ppm_per_year={"putamen": slope_ppm_per_year}, age_years=age
        )
        write_roi_table(out_dir, pid, values)
        rows.append({"participant_id": pid, "age": round(age, 1)})
    tsv = write_participants(tmp_path / "participants.tsv", rows)

    result = run_group_level(out_dir, tsv)

    table = result.age_regression.set_index(["roi", "hemisphere"])
    for hemisphere in ("left", "right"):
        row = table.loc[("putamen", hemisphere)]
        assert row["n"] == 30
        assert row["slope_ppm_per_year"] == pytest.approx(slope_ppm_per_year, rel=0.1)
        assert row["p_fdr"] < 0.01
    # No slope leaks into the other ROIs: their slopes stay within about four standard
    # errors (BETWEEN_SUBJECT_SD_PPM / (sd(age) * sqrt(n)) ~ 1e-4 ppm/year) of zero.
    others = table.drop(index="putamen", level="roi")
    assert (others["slope_ppm_per_year"].abs() < 0.2 * slope_ppm_per_year).all()
    assert (out_dir / "group" / "group_desc-deepgm_age.csv").is_file()


def test_missing_and_malformed_inputs_are_reported(tmp_path, rng):
    out_dir = tmp_path / "derivatives"
    write_roi_table(out_dir, "sub-01", random_values(rng))
    write_roi_table(out_dir, "sub-02", random_values(rng))
    bad = write_roi_table(out_dir, "sub-04", random_values(rng), drop_column="mean_ppm")
    write_roi_table(out_dir, "sub-05", random_values(rng))
    garbage = out_dir / "sub-06" / "anat" / "sub-06_desc-deepgm_chistats.csv"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"")
    tsv = write_participants(
        tmp_path / "participants.tsv",
        [
            {"participant_id": f"sub-0{i}", "age": 20 + i, "group": "a" if i % 2 else "b"}
            for i in (1, 2, 3, 4)
        ],
    )

    result = run_group_level(out_dir, tsv)

    skipped = result.skipped
    assert "sub-03: no ROI table found" in skipped
    bad_name = str(bad.relative_to(out_dir))
    assert any(line.startswith(bad_name) and "mean_ppm" in line for line in skipped)
    assert any(
        line.startswith(str(garbage.relative_to(out_dir))) and "unreadable" in line
        for line in skipped
    )
    assert any(line.startswith("sub-04:") for line in skipped)
    assert any(line.startswith("sub-05:") and "participants.tsv" in line for line in skipped)
    text = (out_dir / "group" / "group_desc-deepgm_skipped.txt").read_text()
    assert text.splitlines() == skipped

    wide = result.wide_table.set_index("participant_id")
    assert list(wide.index) == ["sub-01", "sub-02", "sub-05"]
    assert np.isnan(wide.loc["sub-05", "age"])
    assert wide.loc["sub-02", "age"] == 22


def test_unknown_group_by_raises_before_writing(tmp_path, rng):
    out_dir, tsv = make_two_groups(tmp_path, rng, effect_ppm=0.0)

    with pytest.raises(ValueError, match="'diagnosis'.*available columns: group"):
        run_group_level(out_dir, tsv, group_by="diagnosis")
    assert not (out_dir / "group").exists()


def test_no_tables_raises_file_not_found(tmp_path):
    (tmp_path / "sub-01" / "anat").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match=ROI_TABLE_PATTERN.replace("*", r"\*")) as info:
        run_group_level(tmp_path, None)
    assert str(tmp_path) in str(info.value)


def test_mixed_reference_is_an_error(tmp_path, rng):
    out_dir = tmp_path / "derivatives"
    write_roi_table(out_dir, "sub-01", random_values(rng), chi_reference="whole_brain")
    write_roi_table(out_dir, "sub-02", random_values(rng), chi_reference="csf")

    with pytest.raises(ValueError, match="chi_reference"):
        run_group_level(out_dir, None)


def test_rerun_removes_outputs_of_earlier_run(tmp_path, rng):
    out_dir, tsv = make_two_groups(tmp_path, rng, effect_ppm=0.0)
    first = run_group_level(out_dir, tsv, group_by="group")
    assert (out_dir / "group" / "group_desc-deepgm_comparison.csv") in first.written

    second = run_group_level(out_dir, tsv)

    assert second.comparisons is None
    remaining = sorted(p.name for p in (out_dir / "group").iterdir())
    assert remaining == sorted(p.name for p in second.written)


def test_compare_groups_with_missing_values_and_tiny_groups(rng):
    ids = ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"]
    columns = pd.MultiIndex.from_tuples([("caudate", "left"), ("putamen", "left")])
    values = pd.DataFrame(rng.normal(size=(5, 2)), index=ids, columns=columns)
    values.loc["sub-05", ("putamen", "left")] = np.nan
    groups = pd.Series(["a", "a", "b", "b", "b"], index=ids)
    groups["sub-04"] = np.nan  # leaves group b with sub-03, and sub-05 for caudate only

    table = compare_groups(values, groups).set_index("roi")

    assert table.loc["caudate", ["n_a", "n_b"]].tolist() == [2, 2]
    assert np.isfinite(table.loc["caudate", "welch_p"])
    # Putamen has one value in group b: no test, no FDR value, not significant.
    assert table.loc["putamen", ["n_a", "n_b"]].tolist() == [2, 1]
    assert np.isnan(table.loc["putamen", ["welch_p", "mannwhitney_p", "welch_p_fdr"]]).all()
    assert not table.loc["putamen", "significant_fdr"]
    assert table.loc["putamen", "mean_b"] == pytest.approx(
        values.loc["sub-03", ("putamen", "left")]
    )

    with pytest.raises(ValueError, match="two groups"):
        compare_groups(values, pd.Series(["a"] * 5, index=ids))
