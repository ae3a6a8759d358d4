"""Group-level statistics of the deep gray matter susceptibility ROI tables.

:func:`run_group_level` gathers the participants' ROI tables
(:mod:`~qsmflow.analysis.group.collect`), fits the models
(:mod:`~qsmflow.analysis.group.models`, :mod:`~qsmflow.analysis.group.univariate`),
draws the figures (:mod:`~qsmflow.analysis.group.plots`) and writes into
``<out_dir>/group/``:

* ``group_desc-deepgm_long.csv``: every row of every table, with the covariates;
* ``group_desc-deepgm_wide.csv``: one row per scan, one column per ROI and hemisphere
  (``caudate_left``, ``caudate_bilateral``, ...), the reference values, the covariates;
* ``group_desc-deepgm_summary.csv``: descriptive statistics per ROI over the scans;
* ``group_desc-deepgm_qc.csv``: outlying ROI volumes, chi values, mask volumes and
  registration similarities (robust ``|z| > 3``), used only with ``exclude_flagged``;
* ``group_desc-deepgm_model.{csv,json}`` with ``model``: one row per ROI, hemisphere
  and term (see :data:`~qsmflow.analysis.group.models.MODEL_COLUMNS`), and the sidecar
  naming the model, reference and effect-size kind; ``..._adjusted.{png,svg}``;
* ``group_desc-deepgm_paired.{csv,json}`` with ``paired_by="session"``;
* ``group_desc-deepgm_comparison.csv`` and ``..._boxplot.{png,svg}`` with ``group_by``:
  Welch and Mann-Whitney tests (unadjusted for covariates);
* ``group_desc-deepgm_age.csv`` and ``..._agefit.{png,svg}`` with enough ages;
* ``group_space-<space>_res-<res>_desc-<group>{Mean,SD}_Chimap.nii.gz`` and
  ``..._desc-<group>Count_count.nii.gz`` (+ JSON: n, participants) where the participant
  level wrote template-space chi (``--output-spaces``): voxel-wise maps per ``group_by``
  group (``all`` without it; :mod:`~qsmflow.analysis.group.template_maps`);
* ``group_desc-deepgm_skipped.txt``: what was left out, and why.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from qsmflow.bids.nifti import save_nifti
from qsmflow.files import atomic_write_bytes, atomic_write_text

from . import collect as col
from .models import EFFECT_SIZE_KINDS, fit_roi_models, formula_variables
from .plots import plot_group_boxplot, write_figure
from .template_maps import template_group_maps
from .univariate import MIN_AGE_VALUES, compare_groups, paired_tests, regress_on_age, summarize
from .views import adjusted_figure, age_figure

LOGGER = logging.getLogger(__name__)

AGE_COLUMN = "age"
SESSION = "session"
PAIRED_BY = ("session",)


@dataclass(frozen=True)
class GroupResult:
    """Tables computed by :func:`run_group_level` and the files it wrote.

    ``comparisons``, ``age_regression``, ``model`` and ``paired`` are None when not
    asked for (or, for the age regression, without enough ages).
    """

    long_table: pd.DataFrame
    wide_table: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame | None
    age_regression: pd.DataFrame | None
    model: pd.DataFrame | None
    paired: pd.DataFrame | None
    qc: pd.DataFrame
    skipped: list[str]
    written: list[Path]


def _reconcile(long, participants, participants_tsv, with_files, skipped) -> pd.DataFrame:
    table_ids = set(long["participant_id"])
    if participants is None:
        return pd.DataFrame({"participant_id": sorted(table_ids)})
    clash = [c for c in participants.columns if c != "participant_id" and c in long.columns]
    if clash:
        raise ValueError(f"{participants_tsv} has columns that clash with the ROI table "
                         f"columns: {', '.join(clash)}")
    for pid in participants["participant_id"]:
        if pid not in table_ids:
            skipped.append(f"{pid}: no usable ROI table (every table was skipped)"
                           if pid in with_files else f"{pid}: no ROI table found")
    for pid in sorted(table_ids - set(participants["participant_id"])):
        skipped.append(f"{pid}: not in participants.tsv; kept, with empty covariates")
    return participants


def _check_options(participants, participants_tsv, group_by, model, paired_by) -> None:
    available = [] if participants is None else \
        [c for c in participants.columns if c != "participant_id"]
    if group_by is not None and group_by not in available:
        where = participants_tsv if participants is not None else "participants.tsv (none given)"
        raise ValueError(f"group_by column {group_by!r} is not in {where}; available "
                         f"columns: {', '.join(map(str, available)) or '(none)'}")
    if model is not None:
        unknown = [v for v in formula_variables(model) if v not in (*available, SESSION)]
        if unknown:
            raise ValueError(f"--group-model {model!r} names {', '.join(unknown)}, which "
                             f"{'is' if len(unknown) == 1 else 'are'} not a column of "
                             f"participants.tsv (columns: {', '.join(available) or 'none'}) "
                             "nor 'session'.")
    if paired_by is not None and paired_by not in PAIRED_BY:
        raise ValueError(f"paired_by must be one of {PAIRED_BY}; got {paired_by!r}")


def _check_provenance(long: pd.DataFrame, out_dir: Path) -> None:
    for column in col.PROVENANCE_COLUMNS:
        used = long.groupby(column)["participant_id"].unique()
        if len(used) > 1:
            detail = "; ".join(f"{value!r}: {', '.join(ids)}" for value, ids in used.items())
            raise ValueError(f"ROI tables under {out_dir} mix {column} values, which are not "
                             f"comparable ({detail}). Rerun those participants with the same "
                             "settings.")


def _sessions(scan_values: pd.DataFrame, model, paired_by) -> tuple[pd.DataFrame, list[str]]:
    """Mean over acq/run per (participant, session), and the session labels."""
    values = scan_values.groupby(level=["participant_id", SESSION]).mean()
    labels = sorted(set(values.index.get_level_values(SESSION)) - {""})
    needs = [f"--group-model {model!r}" if model and SESSION in formula_variables(model)
             else None, f"--paired-by {paired_by}" if paired_by else None]
    needs = [n for n in needs if n]
    if needs and not labels:
        raise ValueError(f"{' and '.join(needs)} need sessions, but the ROI tables have no "
                         "session entity. Drop the option (or the session term).")
    if paired_by and len(labels) != 2:
        raise ValueError(f"--paired-by session compares two sessions; the ROI tables have "
                         f"{len(labels)} ({', '.join(labels)}). Use --group-model with a "
                         "session term for more, or --session-label to choose two.")
    return values, labels


def run_group_level(out_dir: Path, participants_tsv: Path | None, *,
                    group_by: str | None = None, statistic: str = "mean_ppm",
                    alpha: float = 0.05, model: str | None = None,
                    paired_by: str | None = None, laterality: bool = False,
                    exclude_flagged: bool = False, participant_label: tuple = (),
                    session_label: tuple = ()) -> GroupResult:
    """Gather the participants' ROI tables, compute group statistics, write them.

    Everything is validated and computed before the first file is written, so an
    error leaves ``<out_dir>/group/`` as it was; each file is written atomically, and
    optional outputs of an earlier run that this run does not produce are removed.

    Parameters
    ----------
    out_dir : Path
        Derivatives directory holding ``sub-*/[ses-*/]anat/*_desc-deepgm_chistats.csv``.
    participants_tsv : Path or None
        The dataset's ``participants.tsv``; None when the dataset has none.
    group_by : str, optional
        ``participants.tsv`` column for the unadjusted Welch / Mann-Whitney tests, and
        the groups of the figures.
    statistic : str
        ROI statistic analysed, one of :data:`~.collect.PPM_STATISTICS`.
    alpha : float
        False discovery rate for ``significant_fdr``, in (0, 1).
    model : str, optional
        Formula such as ``"chi ~ group + age + sex"``, fitted per ROI and hemisphere.
        With more than one session per participant it is a mixed model.
    paired_by : {"session"}, optional
        Paired tests between the two sessions.
    laterality : bool
        Add left - right rows (``hemisphere == "laterality"``).
    exclude_flagged : bool
        Leave out the values that the quality checks flag.
    participant_label, session_label : tuple of str
        Only these participants / sessions (labels without ``sub-``/``ses-``); all
        when empty.

    Raises
    ------
    FileNotFoundError
        If no ROI table exists, or ``participants_tsv`` is given and does not exist.
    ValueError
        For invalid options (unknown statistic or column, a formula naming unknown
        columns, pairing without exactly two sessions), no valid ROI table, or tables
        that mix ``chi_reference`` or ``atlas`` values.
    """
    start_s = time.perf_counter()
    out_dir = Path(out_dir)
    if statistic not in col.PPM_STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(col.PPM_STATISTICS)}; "
                         f"got {statistic!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    participants = col.read_participants(participants_tsv) if participants_tsv else None
    _check_options(participants, participants_tsv, group_by, model, paired_by)

    long, skipped, with_files = col.collect_roi_tables(out_dir)
    if participant_label:
        long = long[long["participant_id"].isin([f"sub-{p}" for p in participant_label])]
        with_files &= {f"sub-{p}" for p in participant_label}
    if session_label:
        long = long[long["session"].isin(session_label)]
    long = long.reset_index(drop=True)
    if long.empty:
        raise ValueError(f"None of the ROI tables under {out_dir} could be used:\n"
                         + "\n".join(skipped))
    _check_provenance(long, out_dir)
    for label, reason in col.failed_runs(out_dir).items():
        skipped.append(f"{label}: failed in the newest participant-level run: {reason}")
    if participant_label and participants is not None:
        participants = participants[participants["participant_id"].isin(
            [f"sub-{p}" for p in participant_label])]
    participants = _reconcile(long, participants, participants_tsv, with_files, skipped)
    covariates = participants.set_index("participant_id")
    long_table = long.merge(participants, on="participant_id", how="left", validate="m:1")

    qc = col.flag_outliers(long, statistic)
    analysed = long
    if exclude_flagged and not qc.empty:
        analysed = col.exclude_flagged(long, qc, statistic)
        skipped.append(f"quality checks: {len(qc)} flagged values (listed in "
                       f"{col.OUTPUT_STEM}_qc.csv) left out (--exclude-flagged)")
    scan_values = col.roi_values(analysed, statistic, laterality=laterality)
    hemispheric = col.hemispheric_columns(scan_values)
    reference = long.groupby(list(col.ENTITY_COLUMNS))[
        ["chi_reference", *col.REFERENCE_COLUMNS, *col.SCAN_QC_COLUMNS]].first()
    wide_table = scan_values.copy()
    wide_table.columns = [f"{roi}_{hemi}" for roi, hemi in wide_table.columns]
    wide_table = wide_table.join(reference).reset_index().merge(
        participants, on="participant_id", how="left", validate="m:1")
    chi_reference = str(long["chi_reference"].iloc[0])
    summary = summarize(scan_values, statistic).assign(chi_reference=chi_reference)
    # One value per participant for the tests that assume independent observations.
    participant_values = scan_values.groupby(level="participant_id").mean()

    comparisons = groups = None
    if group_by is not None:
        groups = covariates[group_by].reindex(participant_values.index)
        for pid in groups.index[groups.isna()]:
            reason = f"{group_by} is n/a" if pid in covariates.index else "not in participants.tsv"
            skipped.append(f"{pid}: {reason}; left out of the group comparison")
        comparisons = compare_groups(participant_values[hemispheric], groups, alpha=alpha)
        comparisons = comparisons.assign(statistic=statistic, chi_reference=chi_reference)

    age_regression = age_years = None
    if AGE_COLUMN in covariates.columns:
        age_raw = covariates[AGE_COLUMN].reindex(participant_values.index)
        age_years = pd.to_numeric(age_raw, errors="coerce")
        for pid in age_years.index[age_years.isna() & age_raw.notna()]:
            skipped.append(f"{pid}: age {age_raw[pid]!r} is not a number; left out of the "
                           "age regression")
        n_ages = int(age_years.notna().sum())
        if n_ages >= MIN_AGE_VALUES:
            age_regression = regress_on_age(participant_values[hemispheric], age_years).assign(
                statistic=statistic, chi_reference=chi_reference)
        else:
            skipped.append(f"age regression: {n_ages} participants with ROI values have a "
                           f"numeric age, {MIN_AGE_VALUES} are needed")

    session_values, session_labels = _sessions(scan_values, model, paired_by)
    repeated = bool(session_values.index.get_level_values("participant_id").duplicated().any())
    model_values = session_values if repeated else participant_values
    model_table = fits = None
    if model is not None:
        model_table, fits, notes = fit_roi_models(model_values, model, covariates=covariates)
        skipped.extend(notes)
    paired = None
    if paired_by is not None:
        paired = paired_tests(session_values, list(scan_values.columns), *session_labels)
        paired = paired.drop(columns="effect_size_kind")

    template_maps, notes = template_group_maps(
        out_dir, groups, group_by=group_by, participant_ids=set(participant_values.index))
    skipped.extend(notes)

    figures = {"boxplot": None, "adjusted": None, "agefit": None}
    if comparisons is not None:
        figures["boxplot"] = plot_group_boxplot(
            participant_values[hemispheric], groups, statistic=statistic, group_by=group_by,
            comparisons=comparisons, alpha=alpha)
    if fits:
        figures["adjusted"] = adjusted_figure(model_values, model_table, fits, model,
                                              covariates, group_by, statistic)
    if age_regression is not None or (fits and AGE_COLUMN in formula_variables(model)):
        figures["agefit"] = age_figure(model_values, participant_values, age_regression,
                                       fits, model, covariates, group_by, statistic)

    sidecar = {
        "Statistic": statistic, "ChiReference": chi_reference,
        "ReferenceColumns": "chi_reference_ppm (subtracted), ref_whole_brain_ppm, "
                            "ref_csf_ppm, ref_wm_ppm: per scan in the wide table",
        "ConfidenceLevel": 0.95, "ExcludeFlagged": exclude_flagged,
        "FDR": "Benjamini-Hochberg within each term over the ROI x hemisphere rows; "
               "bilateral and laterality rows are separate families",
    }
    model_sidecar = paired_sidecar = None
    if model_table is not None:
        kinds = sorted(set(model_table["effect_size_kind"]))
        model_sidecar = dict(sidecar, Formula=model, Model=(
            "MixedLM, random intercept per participant (REML)" if repeated else "OLS"),
            Observations="participant x session" if repeated else "participant",
            EffectSize={k: EFFECT_SIZE_KINDS[k] for k in kinds},
            EffectSizeByTerm=dict(zip(model_table["term"], model_table["effect_size_kind"],
                                      strict=True)))
        model_table = model_table.drop(columns="effect_size_kind")
    if paired is not None:
        paired_sidecar = dict(sidecar, Test="paired t-test; wilcoxon_*: Wilcoxon signed-rank",
                              Sessions=session_labels,
                              EffectSize={"cohens_dz": EFFECT_SIZE_KINDS["cohens_dz"]})

    group_dir = out_dir / col.GROUP_DIRNAME
    group_dir.mkdir(parents=True, exist_ok=True)
    outputs = {"long.csv": long_table, "wide.csv": wide_table, "summary.csv": summary,
               "qc.csv": qc, "comparison.csv": comparisons, "age.csv": age_regression,
               "model.csv": model_table, "model.json": model_sidecar, "paired.csv": paired,
               "paired.json": paired_sidecar}
    for name, fig in figures.items():
        outputs[f"{name}.png"] = outputs[f"{name}.svg"] = fig
    written = []
    for suffix, content in outputs.items():
        path = group_dir / f"{col.OUTPUT_STEM}_{suffix}"
        if content is None:
            if path.exists():
                LOGGER.info("removing %s from an earlier run", path)
                path.unlink()
        elif isinstance(content, Figure):
            written.append(write_figure(path, content))
        elif isinstance(content, dict):
            written.append(atomic_write_text(path, json.dumps(content, indent=2) + "\n"))
        else:
            written.append(atomic_write_bytes(path, content.to_csv(index=False).encode()))
    for name, (data, affine, map_sidecar) in template_maps.items():
        path = group_dir / name
        written.append(Path(save_nifti(data, affine, path, dtype=data.dtype if
                                       data.dtype.kind == "i" else np.float32)))
        written.append(atomic_write_text(path.with_name(name.split(".")[0] + ".json"),
                                         json.dumps(map_sidecar, indent=2) + "\n"))
    for path in group_dir.glob("group_space-*"):
        if path not in written:
            LOGGER.info("removing %s from an earlier run", path)
            path.unlink()
    written.append(atomic_write_text(group_dir / f"{col.OUTPUT_STEM}_skipped.txt",
                                     "".join(f"{line}\n" for line in skipped)))
    if not qc.empty:
        LOGGER.warning("quality checks flagged %d values (robust |z| > %g); see %s", len(qc),
                       col.OUTLIER_Z, group_dir / f"{col.OUTPUT_STEM}_qc.csv")
    LOGGER.info("group level: %d participants, %d scans, %d skipped notes, %d files in %s "
                "(%.1f s)", participant_values.shape[0], scan_values.shape[0], len(skipped),
                len(written), group_dir, time.perf_counter() - start_s)
    return GroupResult(long_table=long_table, wide_table=wide_table, summary=summary,
                       comparisons=comparisons, age_regression=age_regression,
                       model=model_table, paired=paired, qc=qc, skipped=skipped,
                       written=written)
