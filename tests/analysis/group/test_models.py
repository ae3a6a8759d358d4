"""Group models on synthetic cohorts with known effects (issue 14's must-show).

The cohorts (tests/analysis/group/cohort.py) are written as CSV tables by code that
shares nothing with the group level; the truths are the planted effects.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qsmflow.analysis.group import run_group_level
from qsmflow.analysis.group.models import MODEL_COLUMNS, fit_roi_models

from .cohort import PAIRS, VOXELS, two_group_cohort, values_frame, write_cohort, write_table

EFFECT_PPM = 0.01
TERM = "group[T.patient]"
Q_LEVEL = 0.05


@pytest.fixture
def cohort(tmp_path, rng):
    participants, chi = two_group_cohort(rng, group_effect_ppm=EFFECT_PPM)
    out_dir, tsv = write_cohort(tmp_path, participants, chi)
    return out_dir, tsv, participants, chi


def test_adjusted_model_finds_the_putamen_only(cohort):
    out_dir, tsv, participants, _ = cohort
    # The synthetic patients are older: the cohort is confounded by age as designed.
    ages = participants.groupby("group")["age"].mean()
    assert ages["patient"] - ages["control"] > 10

    result = run_group_level(out_dir, tsv, group_by="group", model="chi ~ group + age + sex")

    table = result.model
    group = table[table["term"] == TERM].set_index(["roi", "hemisphere"])
    for hemi in ("left", "right"):
        row = group.loc[("putamen", hemi)]
        assert row["ci_low"] <= EFFECT_PPM <= row["ci_high"]
        assert row["q_fdr"] < Q_LEVEL
        assert row["n"] == 40
    hemispheric = group.drop(index="bilateral", level="hemisphere")
    others = hemispheric.drop(index="putamen", level="roi")
    assert len(others) == 12
    assert (others["q_fdr"] < Q_LEVEL).sum() <= 2
    # The unadjusted tests (Welch, and the model without age) call several of them.
    welch = result.comparisons[result.comparisons["roi"] != "putamen"]
    assert welch["significant_fdr"].sum() >= 6
    crude, _, _ = fit_roi_models(values_frame(cohort[3]), "chi ~ group",
                                 covariates=participants.set_index("participant_id"))
    crude = crude[(crude["term"] == TERM) & (crude["roi"] != "putamen")]
    assert (crude["q_fdr"] < Q_LEVEL).sum() >= 6

    # BH within the term over the 14 ROI x hemisphere rows; bilateral rows apart.
    np.testing.assert_allclose(
        hemispheric["q_fdr"], stats.false_discovery_control(hemispheric["p"], method="bh"))
    assert group.loc[("putamen", "bilateral"), "ci_low"] <= EFFECT_PPM

    on_disk = pd.read_csv(out_dir / "group" / "group_desc-deepgm_model.csv")
    assert list(on_disk.columns) == list(MODEL_COLUMNS)
    assert set(on_disk["term"]) == {TERM, "sex[T.M]", "age"}
    sidecar = json.loads((out_dir / "group" / "group_desc-deepgm_model.json").read_text())
    assert sidecar["Model"] == "OLS" and sidecar["Formula"] == "chi ~ group + age + sex"
    assert sidecar["EffectSizeByTerm"] == {TERM: "cohens_d", "sex[T.M]": "cohens_d",
                                           "age": "partial_eta_squared"}
    assert sidecar["ChiReference"] == "whole_brain"
    for name in ("adjusted", "agefit"):
        png = out_dir / "group" / f"group_desc-deepgm_{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_estimates_and_effect_sizes_match_least_squares(rng):
    participants, chi = two_group_cohort(rng)
    values = values_frame(chi)[[("putamen", "left")]]
    covariates = participants.set_index("participant_id")
    table, _, _ = fit_roi_models(values, "chi ~ group + age", covariates=covariates)

    # Independent answer: numpy least squares on a hand-built design.
    x = np.column_stack([np.ones(40), (covariates["group"] == "patient").to_numpy(float),
                         covariates["age"].to_numpy(float)])
    y = values[("putamen", "left")].reindex(covariates.index).to_numpy(float)
    beta, rss, _, _ = np.linalg.lstsq(x, y, rcond=None)
    residual_sd = np.sqrt(rss[0] / (40 - 3))
    covariance = residual_sd**2 * np.linalg.inv(x.T @ x)
    rows = table.set_index("term")
    assert rows.loc[TERM, "estimate"] == pytest.approx(beta[1], abs=1e-12)
    assert rows.loc[TERM, "se"] == pytest.approx(np.sqrt(covariance[1, 1]), rel=1e-9)
    assert rows.loc[TERM, "effect_size"] == pytest.approx(beta[1] / residual_sd, rel=1e-9)
    t_age = beta[2] / np.sqrt(covariance[2, 2])
    assert rows.loc["age", "effect_size"] == pytest.approx(t_age**2 / (t_age**2 + 37), rel=1e-9)
    half_width = stats.t.ppf(0.975, 37) * np.sqrt(covariance[1, 1])
    assert rows.loc[TERM, "ci_high"] - rows.loc[TERM, "ci_low"] == pytest.approx(
        2 * half_width, rel=1e-9)


def test_coverage_and_false_positives_over_many_cohorts(rng):
    """The 95% CI holds the truth in about 95% of cohorts; a null ROI confounded by age
    is a false positive in about 5% after adjustment (and nearly always without)."""
    n_cohorts = 100
    covered = adjusted_hits = crude_hits = 0
    for _ in range(n_cohorts):
        participants, chi = two_group_cohort(rng)
        values = values_frame(chi)[[("putamen", "left"), ("caudate", "left")]]
        covariates = participants.set_index("participant_id")
        table, _, _ = fit_roi_models(values, "chi ~ group + age", covariates=covariates)
        rows = table[table["term"] == TERM].set_index("roi")
        covered += rows.loc["putamen", "ci_low"] <= EFFECT_PPM <= rows.loc["putamen", "ci_high"]
        adjusted_hits += rows.loc["caudate", "p"] < 0.05
        crude = stats.ttest_ind(*[values.loc[covariates.index[covariates["group"] == g],
                                             ("caudate", "left")] for g in ("control", "patient")])
        crude_hits += crude.pvalue < 0.05
    # Binomial(100, 0.95) is below 89 with probability < 1 %; Binomial(100, 0.05) above 11
    # with probability < 1 %.
    assert covered >= 89
    assert adjusted_hits <= 11
    assert crude_hits >= 90


def _two_session_cohort(rng, *, change_ppm: dict, n: int = 20):
    """Each participant scanned twice; session 2 adds change_ppm[group][roi]."""
    rows, chi = [], {}
    for i in range(n):
        pid, group = f"sub-{i + 1:02d}", "control" if i < n // 2 else "patient"
        rows.append({"participant_id": pid, "group": group, "age": 40 + i})
        subject = {pair: 0.05 + rng.normal(0.0, 0.01) for pair in PAIRS}  # between-subject
        for ses in ("1", "2"):
            chi[(pid, ses)] = {
                (roi, hemi): subject[(roi, hemi)] + rng.normal(0.0, 0.002)
                + (change_ppm.get(group, {}).get(roi, 0.0) if ses == "2" else 0.0)
                for roi, hemi in PAIRS}
    return pd.DataFrame(rows), chi


def test_paired_sessions_recover_the_within_subject_change(tmp_path, rng):
    change = 0.006
    participants, chi = _two_session_cohort(
        rng, change_ppm={g: {"putamen": change} for g in ("control", "patient")})
    out_dir, tsv = write_cohort(tmp_path, participants, chi)

    result = run_group_level(out_dir, tsv, paired_by="session", model="chi ~ session")

    paired = result.paired.set_index(["roi", "hemisphere"])
    for hemi in ("left", "right", "bilateral"):
        row = paired.loc[("putamen", hemi)]
        assert row["term"] == "session[2 - 1]" and row["n"] == 20
        assert row["ci_low"] <= change <= row["ci_high"]
        assert row["q_fdr"] < Q_LEVEL and row["wilcoxon_q_fdr"] < Q_LEVEL
    # The change is 3 within-subject SDs (0.002 * sqrt(2)) against 0.01 between subjects:
    # only a paired analysis sees it clearly.
    assert row["effect_size"] > 1.5
    others = paired.drop(index="putamen", level="roi")
    assert (others["q_fdr"] < Q_LEVEL).sum() <= 2

    mixed = result.model[result.model["term"] == "session[T.2]"].set_index(
        ["roi", "hemisphere"])
    assert mixed.loc[("putamen", "left"), "ci_low"] <= change <= mixed.loc[
        ("putamen", "left"), "ci_high"]
    assert mixed.loc[("putamen", "left"), "n"] == 40
    sidecar = json.loads((out_dir / "group" / "group_desc-deepgm_model.json").read_text())
    assert sidecar["Model"].startswith("MixedLM")
    assert json.loads((out_dir / "group" / "group_desc-deepgm_paired.json").read_text())[
        "Sessions"] == ["1", "2"]


def test_mixed_model_recovers_a_group_by_session_interaction(rng):
    change = 0.008
    participants, chi = _two_session_cohort(
        rng, change_ppm={"patient": {"globus_pallidus": change}})
    values = values_frame(chi)
    values.index = pd.MultiIndex.from_tuples(values.index, names=["participant_id", "session"])

    table, fits, _ = fit_roi_models(values, "chi ~ group * session",
                                    covariates=participants.set_index("participant_id"))

    assert fits[("globus_pallidus", "left")].mixed
    rows = table[table["term"] == "group[T.patient]:session[T.2]"].set_index(
        ["roi", "hemisphere"])
    for hemi in ("left", "right"):
        assert rows.loc[("globus_pallidus", hemi), "ci_low"] <= change <= rows.loc[
            ("globus_pallidus", hemi), "ci_high"]
        assert rows.loc[("globus_pallidus", hemi), "q_fdr"] < Q_LEVEL
    assert (rows.drop(index="globus_pallidus", level="roi")["q_fdr"] < Q_LEVEL).sum() <= 2


def test_outliers_are_flagged_and_excluded_only_on_request(tmp_path, rng):
    participants, chi = two_group_cohort(rng)
    out_dir, tsv = write_cohort(tmp_path, participants, chi)
    # sub-003: a failed registration puts the left putamen label in the ventricles.
    bad = dict(chi["sub-003"])
    bad[("putamen", "left")] = -0.05
    write_table(out_dir, "sub-003", bad, voxels={("putamen", "left"): 3 * VOXELS["putamen"]})
    write_table(out_dir, "sub-104", chi["sub-104"], similarity=0.4)

    kept = run_group_level(out_dir, tsv, model="chi ~ group + age")
    flagged = kept.qc.set_index(["participant_id", "measure"])
    assert {("sub-003", "volume_mm3"), ("sub-003", "mean_ppm"),
            ("sub-104", "registration_similarity")} <= set(flagged.index)
    assert flagged.loc[("sub-003", "volume_mm3"), "roi"] == "putamen"
    assert (pd.read_csv(out_dir / "group" / "group_desc-deepgm_qc.csv")["z"].abs() > 3).all()
    n = kept.model[kept.model["term"] == TERM].set_index(["roi", "hemisphere"])["n"]
    assert n[("putamen", "left")] == 40

    dropped = run_group_level(out_dir, tsv, model="chi ~ group + age", exclude_flagged=True)
    n = dropped.model[dropped.model["term"] == TERM].set_index(["roi", "hemisphere"])["n"]
    assert n[("putamen", "left")] == 38  # sub-003's value and all of sub-104
    assert n[("putamen", "bilateral")] == 38
    assert n[("caudate", "left")] == 39
    assert any("--exclude-flagged" in line for line in dropped.skipped)


def test_bilateral_is_volume_weighted_and_laterality_on_request(tmp_path, rng):
    participants, chi = two_group_cohort(rng, n_per_group=3)
    out_dir, tsv = write_cohort(tmp_path, participants, chi)
    write_table(out_dir, "sub-001", chi["sub-001"], voxels={("caudate", "left"): 300,
                                                            ("caudate", "right"): 100})

    wide = run_group_level(out_dir, tsv, laterality=True).wide_table.set_index(
        "participant_id")

    left, right = chi["sub-001"][("caudate", "left")], chi["sub-001"][("caudate", "right")]
    assert wide.loc["sub-001", "caudate_bilateral"] == pytest.approx(0.75 * left + 0.25 * right)
    assert wide.loc["sub-001", "caudate_laterality"] == pytest.approx(left - right)
    assert wide.loc["sub-001", "ref_wm_ppm"] == pytest.approx(-0.02)


@pytest.mark.parametrize(("options", "message"), [
    ({"model": "group ~ age"}, "'chi' alone on the left"),
    ({"model": "chi ~ diagnosis + age"}, "diagnosis.*not a column of participants.tsv"),
    ({"model": "chi ~ group +"}, "not a valid formula"),
    ({"model": "chi ~ session"}, "need sessions"),
    ({"paired_by": "session"}, "need sessions"),
])
def test_bad_model_options_are_errors_before_writing(cohort, options, message):
    out_dir, tsv, _, _ = cohort
    with pytest.raises(ValueError, match=message):
        run_group_level(out_dir, tsv, **options)
    assert not (out_dir / "group").exists()
