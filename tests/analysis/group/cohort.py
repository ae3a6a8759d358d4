"""Synthetic cohorts of ROI tables with known effects, written as the participant level
writes them (one CSV per scan), by code independent of qsmflow's group level."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

ROIS = ("caudate", "putamen", "globus_pallidus", "thalamus", "substantia_nigra",
        "red_nucleus", "dentate_nucleus")
HEMISPHERES = ("left", "right")
PAIRS = [(roi, hemi) for roi in ROIS for hemi in HEMISPHERES]
# Deep gray matter susceptibility relative to whole brain at age 50, ppm, and its rise
# with age (iron accumulation), ppm per year; of the order of Li et al. NeuroImage
# 2014;103:35-47 (the exact values do not matter, only that every ROI rises).
CHI_AT_50_PPM = {"caudate": 0.06, "putamen": 0.05, "globus_pallidus": 0.15,
                 "thalamus": 0.01, "substantia_nigra": 0.12, "red_nucleus": 0.10,
                 "dentate_nucleus": 0.09}
SLOPE_PPM_PER_YEAR = {"caudate": 0.0008, "putamen": 0.0012, "globus_pallidus": 0.0010,
                      "thalamus": 0.0004, "substantia_nigra": 0.0009, "red_nucleus": 0.0009,
                      "dentate_nucleus": 0.0007}
VOXELS = {"caudate": 450, "putamen": 600, "globus_pallidus": 200, "thalamus": 900,
          "substantia_nigra": 60, "red_nucleus": 40, "dentate_nucleus": 120}
VOXEL_VOLUME_MM3 = 8.0
HEADER = ["participant_id", "session", "acq", "run", "roi", "hemisphere", "label_id",
          "n_voxels", "volume_mm3", "mean_ppm", "median_ppm", "std_ppm", "p25_ppm",
          "p75_ppm", "chi_reference", "chi_reference_ppm", "ref_whole_brain_ppm",
          "ref_csf_ppm", "ref_wm_ppm", "mask_volume_mm3", "registration_similarity", "atlas"]


def write_table(out_dir: Path, participant: str, chi_ppm: dict, *, session: str = "",
                voxels: dict | None = None, similarity: float = 0.9,
                mask_volume_mm3: float = 1.4e6) -> Path:
    """One ``*_desc-deepgm_chistats.csv`` with the given mean chi per (roi, hemisphere)."""
    voxels = voxels or {}
    anat = out_dir / participant / (f"ses-{session}" if session else "") / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    path = anat / (participant + (f"_ses-{session}" if session else "")
                   + "_desc-deepgm_chistats.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for label_id, (roi, hemi) in enumerate(PAIRS, start=1):
            n = voxels.get((roi, hemi), VOXELS[roi])
            mean = chi_ppm[(roi, hemi)]
            writer.writerow([participant, session, "", "", roi, hemi, label_id, n,
                             n * VOXEL_VOLUME_MM3, mean, mean, 0.02, mean - 0.01, mean + 0.01,
                             "whole_brain", -0.003, -0.003, 0.004, -0.02, mask_volume_mm3,
                             similarity, "AAL3+SUITdentate"])
    return path


def two_group_cohort(rng, *, n_per_group: int = 20, group_effect_ppm: float = 0.01,
                     effect_roi: str = "putamen", noise_ppm: float = 0.004,
                     mean_age=(45.0, 62.0), sd_age: float = 8.0) -> tuple[pd.DataFrame, dict]:
    """Controls and (older) patients; chi rises with age everywhere, and patients have
    ``group_effect_ppm`` more in ``effect_roi`` only.

    Returns participants (participant_id, group, age, sex) and {participant: chi dict}.
    """
    rows, chi = [], {}
    for g, group in enumerate(("control", "patient")):
        for i in range(n_per_group):
            pid = f"sub-{g}{i + 1:02d}"
            age = rng.normal(mean_age[g], sd_age)
            rows.append({"participant_id": pid, "group": group, "age": round(age, 2),
                         "sex": "F" if rng.random() < 0.5 else "M"})
            chi[pid] = {
                (roi, hemi): CHI_AT_50_PPM[roi] + SLOPE_PPM_PER_YEAR[roi] * (round(age, 2) - 50)
                + (group_effect_ppm if group == "patient" and roi == effect_roi else 0.0)
                + rng.normal(0.0, noise_ppm)
                for roi, hemi in PAIRS}
    return pd.DataFrame(rows), chi


def write_cohort(tmp_path: Path, participants: pd.DataFrame, chi: dict) -> tuple[Path, Path]:
    out_dir = tmp_path / "derivatives"
    for pid, values in chi.items():
        if isinstance(pid, tuple):
            write_table(out_dir, pid[0], values, session=pid[1])
        else:
            write_table(out_dir, pid, values)
    tsv = tmp_path / "participants.tsv"
    participants.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    return out_dir, tsv


def values_frame(chi: dict) -> pd.DataFrame:
    """Participants x (roi, hemisphere) frame of a cohort's chi dicts."""
    frame = pd.DataFrame.from_dict(chi, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame.index.name = "participant_id"
    return frame


def bilateral(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return (values * counts).sum(axis=-1) / counts.sum(axis=-1)


def main(argv=None) -> None:
    """Draw docs/group_adjusted.png: the synthetic cohort's adjusted means (seed 12345).

    ``python -m tests.analysis.group.cohort docs/group_adjusted.png``
    """
    import sys

    from qsmflow.analysis.group.models import fit_roi_models
    from qsmflow.analysis.group.views import adjusted_figure

    path = (argv or sys.argv[1:] or ["docs/group_adjusted.png"])[0]
    participants, chi = two_group_cohort(np.random.default_rng(12345))
    shown = [(roi, hemi) for roi in ("caudate", "putamen", "globus_pallidus")
             for hemi in HEMISPHERES]
    values = values_frame(chi)[shown]
    formula = "chi ~ group + age + sex"
    covariates = participants.set_index("participant_id")
    table, fits, _ = fit_roi_models(values, formula, covariates=covariates)
    fig = adjusted_figure(values, table, fits, formula, covariates, "group", "mean_ppm")
    fig.suptitle("synthetic cohort (patients 17 years older; +0.01 ppm in putamen only):\n"
                 f"participants, adjusted means and 95% CI of {formula}; * q_fdr < 0.05",
                 fontsize="small")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
