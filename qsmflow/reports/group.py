"""Group-level statistics of the deep gray matter susceptibility ROI tables.

The participant level writes one ROI table per scan,
``sub-<label>[/ses-<label>]/anat/*_desc-deepgm_chistats.csv``. This module gathers
them, joins the covariates of ``participants.tsv``, and writes into ``<out_dir>/group/``:

* ``group_desc-deepgm_long.csv``: every row of every table, with the covariates;
* ``group_desc-deepgm_wide.csv``: one row per scan (participant, session, acq, run),
  one column per ROI and hemisphere (``caudate_left``, ...);
* ``group_desc-deepgm_summary.csv``: descriptive statistics per ROI over the scans;
* ``group_desc-deepgm_comparison.csv`` and ``group_desc-deepgm_boxplot.{png,svg}``
  when a grouping column is given: Welch's t-test and the Mann-Whitney U test for
  every pair of groups and every ROI, Benjamini-Hochberg corrected over all tests;
* ``group_desc-deepgm_age.csv`` when ``participants.tsv`` has at least
  :data:`MIN_AGE_VALUES` numeric ages: a linear regression of each ROI on age;
* ``group_desc-deepgm_skipped.txt``: one line per file, participant or analysis that
  was left out, and why.

Inferential statistics (group comparisons, age regression) use one value per
participant, the mean over that participant's scans, because the tests assume
independent observations. The descriptive summary describes the scans themselves.

References
----------
Welch BL. The generalization of "Student's" problem when several different
population variances are involved. Biometrika 1947;34:28-35.
Mann HB, Whitney DR. On a test of whether one of two random variables is
stochastically larger than the other. Ann Math Stat 1947;18:50-60.
Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and
powerful approach to multiple testing. J R Stat Soc B 1995;57:289-300.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from qsmflow.data import data_path
from qsmflow.files import atomic_write_bytes

LOGGER = logging.getLogger(__name__)

ROI_TABLE_PATTERN = "sub-*/**/anat/*_desc-deepgm_chistats.csv"
GROUP_DIRNAME = "group"
OUTPUT_STEM = "group_desc-deepgm"

ENTITY_COLUMNS = ("participant_id", "session", "acq", "run")
ROI_KEY_COLUMNS = ("roi", "hemisphere")
INTEGER_COLUMNS = ("label_id", "n_voxels")
FLOAT_COLUMNS = ("volume_mm3", "mean_ppm", "median_ppm", "std_ppm", "p25_ppm", "p75_ppm")
REQUIRED_COLUMNS = (
    *ENTITY_COLUMNS,
    *ROI_KEY_COLUMNS,
    *INTEGER_COLUMNS,
    *FLOAT_COLUMNS,
    "chi_reference",
    "atlas",
)
# Columns that must be the same in every table for the values to be comparable.
PROVENANCE_COLUMNS = ("chi_reference", "atlas")
# Statistics that may be analysed; all are susceptibilities in ppm, which the
# column names of the outputs (``slope_ppm_per_year``, ``intercept_ppm``) rely on.
PPM_STATISTICS = ("mean_ppm", "median_ppm", "std_ppm", "p25_ppm", "p75_ppm")

# Cell values read as missing: BIDS writes "n/a", spreadsheets write the others.
MISSING_TOKENS = ("", "n/a", "N/A", "NA", "nan", "NaN")
PARTICIPANT_PREFIX = "sub-"
AGE_COLUMN = "age"
# A regression line needs a third point before it has a residual (and a p-value).
MIN_AGE_VALUES = 3
# Welch's test needs a variance estimate in each group.
MIN_PER_GROUP = 2

QUARTILE_LOW = 0.25
QUARTILE_HIGH = 0.75

# Figure layout, in inches (matplotlib's unit) and data units of the x axis.
PANEL_WIDTH_IN = 2.4
PANEL_HEIGHT_IN = 3.0
BOX_WIDTH = 0.6
STRIP_HALF_WIDTH = 0.18
STRIP_MARKER_SIZE_PT = 4.0
STRIP_ALPHA = 0.7
FIGURE_DPI = 150
# Fixed so that the jitter of the strip plot, and so the figure, is reproducible.
STRIP_JITTER_SEED = 20240601
SVG_HASH_SALT = "qsmflow"


@dataclass(frozen=True)
class GroupResult:
    """Tables computed by :func:`run_group_level` and the files it wrote.

    Attributes
    ----------
    long_table : DataFrame
        Every ROI row of every table, joined with the ``participants.tsv`` columns.
    wide_table : DataFrame
        One row per scan (participant_id, session, acq, run), one column per ROI and
        hemisphere holding the analysed statistic, then the covariates.
    summary : DataFrame
        Per ROI and hemisphere: n, n_participants, mean, sd, median, q25, q75, iqr.
    comparisons : DataFrame or None
        Pairwise group tests (see :func:`compare_groups`); None without ``group_by``.
    age_regression : DataFrame or None
        Regression on age (see :func:`regress_on_age`); None without enough ages.
    skipped : list of str
        One human-readable line per file, participant or analysis left out.
    written : list of Path
        Files written, in order.
    """

    long_table: pd.DataFrame
    wide_table: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame | None
    age_regression: pd.DataFrame | None
    skipped: list[str]
    written: list[Path]


# --------------------------------------------------------------------------- inputs


@lru_cache(maxsize=1)
def _canonical_roi_order() -> tuple[tuple[str, str], ...]:
    """(roi, hemisphere) pairs in the order of the shipped ``deepgm_labels.tsv``."""
    with open(data_path("deepgm_labels.tsv"), newline="") as f:
        rows = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: int(r["index"]))
    return tuple((r["roi"], r["hemisphere"]) for r in rows)


def _roi_sort_key(pair: tuple[str, str]) -> tuple[int, str, str]:
    order = _canonical_roi_order()
    rank = order.index(pair) if pair in order else len(order)
    return (rank, *pair)


def _sorted_roi_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(set(pairs), key=_roi_sort_key)


def _normalize_participant_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith(PARTICIPANT_PREFIX) else PARTICIPANT_PREFIX + value


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read_roi_table(path: Path, participant_dir: str) -> tuple[pd.DataFrame | None, str]:
    """Read and validate one ROI table; return (table, "") or (None, reason)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        return None, f"unreadable ({type(e).__name__}: {str(e).strip()})"
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        return None, f"missing required columns: {', '.join(missing)}"
    if raw.empty:
        return None, "no rows"
    extra = [c for c in raw.columns if c not in REQUIRED_COLUMNS]
    if extra:
        LOGGER.debug("%s: ignoring extra columns %s", path, extra)

    table = pd.DataFrame(index=raw.index)
    for column in REQUIRED_COLUMNS:
        text = raw[column].str.strip()
        if column in INTEGER_COLUMNS or column in FLOAT_COLUMNS:
            is_missing = text.isin(MISSING_TOKENS)
            number = pd.to_numeric(text.mask(is_missing), errors="coerce")
            bad = number.isna() & ~is_missing
            if bad.any():
                return None, f"non-numeric {column} value {text[bad].iloc[0]!r}"
            if column in INTEGER_COLUMNS:
                if number.isna().any() or (number != np.round(number)).any():
                    return None, f"{column} must be whole numbers, with none missing"
                number = number.astype(np.int64)
            table[column] = number
        else:
            table[column] = text.mask(text.isin(MISSING_TOKENS), "")

    for column in ("participant_id", *ROI_KEY_COLUMNS):
        if (table[column] == "").any():
            return None, f"empty {column} values"
    table["participant_id"] = table["participant_id"].map(_normalize_participant_id)
    ids = sorted(table["participant_id"].unique())
    if ids != [participant_dir]:
        return None, f"participant_id {', '.join(ids)} does not match directory {participant_dir}"
    key = [*ENTITY_COLUMNS, *ROI_KEY_COLUMNS]
    duplicated = table.duplicated(key)
    if duplicated.any():
        first = table.loc[duplicated, key].iloc[0].tolist()
        return None, f"duplicate rows for {first}"
    return table, ""


def _collect(out_dir: Path) -> tuple[pd.DataFrame, list[str], set[str]]:
    """Tables, skip reasons, and the participants that have at least one table file."""
    out_dir = Path(out_dir)
    paths = sorted(p for p in out_dir.glob(ROI_TABLE_PATTERN) if p.is_file())
    if not paths:
        raise FileNotFoundError(
            f"No ROI tables found under {out_dir} matching {ROI_TABLE_PATTERN!r}; "
            "run the participant level first."
        )
    key = [*ENTITY_COLUMNS, *ROI_KEY_COLUMNS]
    tables: list[pd.DataFrame] = []
    owner: dict[tuple, str] = {}  # key of each row -> file it came from
    skipped: list[str] = []
    participants_with_files: set[str] = set()
    for path in paths:
        name = _relative(path, out_dir)
        participant_dir = path.relative_to(out_dir).parts[0]
        participants_with_files.add(participant_dir)
        table, reason = _read_roi_table(path, participant_dir)
        if table is None:
            skipped.append(f"{name}: {reason}")
            continue
        keys = list(table[key].itertuples(index=False, name=None))
        clash = next((k for k in keys if k in owner), None)
        if clash is not None:
            skipped.append(f"{name}: rows for {list(clash)} already read from {owner[clash]}")
            continue
        owner.update(dict.fromkeys(keys, name))
        tables.append(table)
    if tables:
        long = pd.concat(tables, ignore_index=True)
    else:
        long = pd.DataFrame({c: pd.Series(dtype=object) for c in REQUIRED_COLUMNS})
    return long, skipped, participants_with_files


def collect_roi_tables(out_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read and concatenate every participant's deep gray matter ROI table.

    Parameters
    ----------
    out_dir : Path
        Derivatives directory of the participant level; tables are found with
        :data:`ROI_TABLE_PATTERN`, with or without a session level.

    Returns
    -------
    table : DataFrame
        The rows of every valid table, columns :data:`REQUIRED_COLUMNS` in that
        order; empty session/acq/run are ``""``. Empty (with those columns) when no
        table was valid.
    skipped : list of str
        ``"<file relative to out_dir>: <reason>"`` for each table left out: unreadable,
        missing required columns, non-numeric values, a participant_id that differs
        from its ``sub-*`` directory, or rows already read from another file.

    Raises
    ------
    FileNotFoundError
        If no file matches the pattern.
    """
    table, skipped, _ = _collect(out_dir)
    return table, skipped


def read_participants(participants_tsv: Path) -> pd.DataFrame:
    """Read ``participants.tsv``: "n/a" and empty cells become NaN.

    Participant IDs without the ``sub-`` prefix get it, as in the ROI tables.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it has no ``participant_id`` column, an empty ID, or a repeated ID.
    """
    participants_tsv = Path(participants_tsv)
    if not participants_tsv.is_file():
        raise FileNotFoundError(f"participants table {participants_tsv} does not exist")
    table = pd.read_csv(
        participants_tsv,
        sep="\t",
        dtype={"participant_id": str},
        na_values=list(MISSING_TOKENS),
        keep_default_na=False,
    )
    if "participant_id" not in table.columns:
        raise ValueError(
            f"{participants_tsv} has no participant_id column "
            f"(columns: {', '.join(map(str, table.columns))})"
        )
    if table["participant_id"].isna().any():
        raise ValueError(f"{participants_tsv} has rows with an empty participant_id")
    table["participant_id"] = table["participant_id"].map(_normalize_participant_id)
    repeated = table["participant_id"][table["participant_id"].duplicated()].unique()
    if repeated.size:
        raise ValueError(f"{participants_tsv} lists {', '.join(repeated)} more than once")
    return table


# ------------------------------------------------------------------------ statistics


def _roi_values(long: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Scans x (roi, hemisphere) table of ``statistic``, columns in canonical order."""
    values = long.set_index([*ENTITY_COLUMNS, *ROI_KEY_COLUMNS])[statistic].unstack(
        list(ROI_KEY_COLUMNS)
    )
    values = values[_sorted_roi_pairs(values.columns)]
    return values.sort_index()


def _flat_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]}_{pair[1]}"


def summarize(values: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Descriptive statistics of each ROI over the scans.

    Parameters
    ----------
    values : DataFrame
        Rows are scans, indexed by at least ``participant_id``; columns are
        (roi, hemisphere) pairs.
    statistic : str
        Name of the statistic, copied into the ``statistic`` column.

    Returns
    -------
    DataFrame
        roi, hemisphere, n (scans with a value), n_participants, mean, sd (sample,
        ``ddof=1``), median, q25, q75, iqr (linear interpolation), statistic.
    """
    rows = []
    for pair in values.columns:
        column = values[pair].dropna()
        x = column.to_numpy(dtype=float)
        q25, median, q75 = (
            np.quantile(x, [QUARTILE_LOW, 0.5, QUARTILE_HIGH]) if x.size else (np.nan,) * 3
        )
        rows.append(
            {
                "roi": pair[0],
                "hemisphere": pair[1],
                "n": int(x.size),
                "n_participants": int(column.index.get_level_values("participant_id").nunique()),
                "mean": x.mean() if x.size else np.nan,
                "sd": x.std(ddof=1) if x.size > 1 else np.nan,
                "median": median,
                "q25": q25,
                "q75": q75,
                "iqr": q75 - q25,
                "statistic": statistic,
            }
        )
    return pd.DataFrame(rows)


def _fdr(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite entries; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(p[finite], method="bh")
    return adjusted


def _where_testable(x, testable: np.ndarray) -> np.ndarray:
    return np.where(testable, np.asarray(x, dtype=float), np.nan)


def _group_label(value) -> str:
    """Group value as text: 1.0 (an integer column with n/a read as float) -> "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compare_groups(values: pd.DataFrame, groups: pd.Series, *, alpha: float = 0.05) -> pd.DataFrame:
    """Welch's t-test and the Mann-Whitney U test for every pair of groups and ROI.

    Parameters
    ----------
    values : DataFrame
        One row per participant (index: participant_id), columns (roi, hemisphere).
    groups : Series
        Group label of each participant (index: participant_id). Participants that
        are missing here or NaN are left out.
    alpha : float
        False discovery rate at which ``significant_fdr`` is set.

    Returns
    -------
    DataFrame
        roi, hemisphere, group_a, group_b, n_a, n_b, mean_a, mean_b, welch_t
        (positive when a > b), welch_p, mannwhitney_u (of group a), mannwhitney_p,
        welch_p_fdr, mannwhitney_p_fdr, significant_fdr. Both tests are two-sided;
        p-values are NaN where a group has fewer than :data:`MIN_PER_GROUP` values.
        The FDR adjustment (Benjamini-Hochberg) runs over every row of the table,
        separately for each test. ``significant_fdr`` is ``welch_p_fdr < alpha``;
        the Mann-Whitney columns are a check that does not assume normality.

    Raises
    ------
    ValueError
        If fewer than two groups remain.
    """
    groups = groups.dropna().map(_group_label)
    groups = groups[groups.index.isin(values.index)]
    labels = sorted(groups.unique())
    if len(labels) < 2:
        raise ValueError(
            f"Group comparison needs at least two groups with ROI values, found {labels}"
        )
    rois = [pair[0] for pair in values.columns]
    hemispheres = [pair[1] for pair in values.columns]
    blocks = []
    for group_a, group_b in itertools.combinations(labels, 2):
        # participants x ROIs; every ROI is tested in one vectorized call per pair.
        a = values.loc[groups.index[groups == group_a]].to_numpy(dtype=float)
        b = values.loc[groups.index[groups == group_b]].to_numpy(dtype=float)
        n_a = np.isfinite(a).sum(axis=0)
        n_b = np.isfinite(b).sum(axis=0)
        testable = (n_a >= MIN_PER_GROUP) & (n_b >= MIN_PER_GROUP)
        with warnings.catch_warnings():
            # Empty, tiny or constant groups give NaN or unreliable statistics; the
            # untestable ones are masked below, constant ones stay NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_a = np.nanmean(a, axis=0)
            mean_b = np.nanmean(b, axis=0)
            welch = stats.ttest_ind(a, b, axis=0, equal_var=False, nan_policy="omit")
            mw = stats.mannwhitneyu(a, b, axis=0, alternative="two-sided", nan_policy="omit")

        blocks.append(
            pd.DataFrame(
                {
                    "roi": rois,
                    "hemisphere": hemispheres,
                    "group_a": group_a,
                    "group_b": group_b,
                    "n_a": n_a,
                    "n_b": n_b,
                    "mean_a": mean_a,
                    "mean_b": mean_b,
                    "welch_t": _where_testable(welch.statistic, testable),
                    "welch_p": _where_testable(welch.pvalue, testable),
                    "mannwhitney_u": _where_testable(mw.statistic, testable),
                    "mannwhitney_p": _where_testable(mw.pvalue, testable),
                }
            )
        )
    table = pd.concat(blocks, ignore_index=True)
    table["welch_p_fdr"] = _fdr(table["welch_p"])
    table["mannwhitney_p_fdr"] = _fdr(table["mannwhitney_p"])
    table["significant_fdr"] = (table["welch_p_fdr"] < alpha).to_numpy(dtype=bool)
    return table


def regress_on_age(values: pd.DataFrame, age_years: pd.Series) -> pd.DataFrame:
    """Ordinary least-squares regression of each ROI on age.

    Parameters
    ----------
    values : DataFrame
        One row per participant (index: participant_id), columns (roi, hemisphere),
        susceptibility in ppm.
    age_years : Series
        Age in years (index: participant_id); NaN is left out.

    Returns
    -------
    DataFrame
        roi, hemisphere, n, slope_ppm_per_year, intercept_ppm (at age 0), r, p
        (two-sided, slope = 0), p_fdr (Benjamini-Hochberg over the ROIs). NaN where
        fewer than :data:`MIN_AGE_VALUES` participants have both values or all ages
        are equal.
    """
    age_years = pd.to_numeric(age_years, errors="coerce").dropna()
    rows = []
    for pair in values.columns:
        both = pd.concat(
            [values[pair].rename("chi"), age_years.rename("age")], axis=1, join="inner"
        ).dropna()
        slope = intercept = r = p = np.nan
        if len(both) >= MIN_AGE_VALUES and both["age"].nunique() > 1:
            fit = stats.linregress(both["age"].to_numpy(float), both["chi"].to_numpy(float))
            slope, intercept, r, p = fit.slope, fit.intercept, fit.rvalue, fit.pvalue
        rows.append(
            {
                "roi": pair[0],
                "hemisphere": pair[1],
                "n": len(both),
                "slope_ppm_per_year": slope,
                "intercept_ppm": intercept,
                "r": r,
                "p": p,
            }
        )
    table = pd.DataFrame(rows)
    table["p_fdr"] = _fdr(table["p"])
    return table


# --------------------------------------------------------------------------- figure


def plot_group_boxplot(
    values: pd.DataFrame,
    groups: pd.Series,
    *,
    statistic: str,
    group_by: str,
    comparisons: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> Figure:
    """Box plot with the individual participants on top, one panel per ROI.

    Rows of panels are hemispheres, columns are ROIs. A ``*`` after a panel title
    marks an ROI with an FDR-significant Welch test in ``comparisons``.

    Parameters
    ----------
    values : DataFrame
        One row per participant (index: participant_id), columns (roi, hemisphere).
    groups : Series
        Group label of each participant; NaN is left out.
    statistic, group_by : str
        Axis and title labels.
    comparisons : DataFrame, optional
        Output of :func:`compare_groups`.
    alpha : float
        The FDR level, for the caption.

    Returns
    -------
    Figure
        A matplotlib figure on the Agg canvas (no pyplot state).
    """
    groups = groups.dropna().map(_group_label)
    groups = groups[groups.index.isin(values.index)]
    labels = sorted(groups.unique())
    pairs = list(values.columns)
    rois = list(dict.fromkeys(roi for roi, _ in pairs))
    hemispheres = list(dict.fromkeys(hemi for _, hemi in pairs))
    significant = set()
    if comparisons is not None:
        hits = comparisons[comparisons["significant_fdr"]]
        significant = set(zip(hits["roi"], hits["hemisphere"], strict=True))

    fig = Figure(
        figsize=(PANEL_WIDTH_IN * len(rois), PANEL_HEIGHT_IN * len(hemispheres)),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(hemispheres), len(rois), squeeze=False)
    jitter_rng = np.random.default_rng(STRIP_JITTER_SEED)
    positions = np.arange(len(labels), dtype=float)
    for row, hemisphere in enumerate(hemispheres):
        for col, roi in enumerate(rois):
            ax = axes[row, col]
            if (roi, hemisphere) not in pairs:
                ax.set_axis_off()
                continue
            column = values[(roi, hemisphere)]
            data = [column.loc[groups.index[groups == g]].dropna().to_numpy(float) for g in labels]
            drawn = [i for i, x in enumerate(data) if x.size]
            if drawn:
                ax.boxplot(
                    [data[i] for i in drawn],
                    positions=positions[drawn],
                    widths=BOX_WIDTH,
                    showfliers=False,
                    medianprops={"color": "black"},
                )
            for position, x in zip(positions, data, strict=True):
                jitter = jitter_rng.uniform(-STRIP_HALF_WIDTH, STRIP_HALF_WIDTH, x.size)
                ax.plot(
                    position + jitter, x, "o", markersize=STRIP_MARKER_SIZE_PT, alpha=STRIP_ALPHA
                )
            ax.set_xticks(positions, labels)
            ax.set_xlim(positions[0] - 1 + BOX_WIDTH, positions[-1] + 1 - BOX_WIDTH)
            mark = " *" if (roi, hemisphere) in significant else ""
            ax.set_title(f"{roi.replace('_', ' ')} ({hemisphere}){mark}", fontsize="medium")
            if col == 0:
                ax.set_ylabel(statistic)
    fig.suptitle(f"{statistic} by {group_by}; * Welch test significant at FDR {alpha:g}")
    return fig


# --------------------------------------------------------------------------- writing


def _atomic_write_csv(path: Path, table: pd.DataFrame) -> Path:
    return atomic_write_bytes(path, table.to_csv(index=False).encode("utf-8"))


def _atomic_write_figure(path: Path, fig: Figure) -> Path:
    buffer = io.BytesIO()
    fmt = path.suffix.lstrip(".")
    # No date in the SVG and a fixed hash salt make the SVG reproducible.
    metadata = {"Date": None} if fmt == "svg" else None
    with rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(buffer, format=fmt, dpi=FIGURE_DPI, metadata=metadata)
    return atomic_write_bytes(path, buffer.getvalue())


def _output_path(group_dir: Path, suffix: str) -> Path:
    return group_dir / f"{OUTPUT_STEM}_{suffix}"


# ----------------------------------------------------------------------- entry point


def run_group_level(
    out_dir: Path,
    participants_tsv: Path | None,
    *,
    group_by: str | None = None,
    statistic: str = "mean_ppm",
    alpha: float = 0.05,
) -> GroupResult:
    """Gather the participants' ROI tables, compute group statistics, write them.

    Everything is validated and computed before the first file is written, so an
    error leaves ``<out_dir>/group/`` as it was. Each file is written atomically.
    Optional outputs of an earlier run that this run does not produce (comparison,
    box plot, age regression) are removed, so the directory never mixes two runs.

    Parameters
    ----------
    out_dir : Path
        Derivatives directory holding ``sub-*/[ses-*/]anat/*_desc-deepgm_chistats.csv``.
        Outputs go to ``out_dir / "group"``.
    participants_tsv : Path or None
        The dataset's ``participants.tsv``; None when the dataset has none.
    group_by : str, optional
        Column of ``participants.tsv`` holding the group of each participant; every
        pair of groups is compared (see :func:`compare_groups`).
    statistic : str
        ROI statistic analysed, one of :data:`PPM_STATISTICS`.
    alpha : float
        False discovery rate for ``significant_fdr``, in (0, 1).

    Returns
    -------
    GroupResult

    Raises
    ------
    FileNotFoundError
        If no ROI table exists under ``out_dir``, or ``participants_tsv`` is given
        and does not exist.
    ValueError
        For an unknown ``statistic``, ``alpha`` outside (0, 1), a ``group_by`` that
        is not a column of ``participants.tsv`` or leaves fewer than two groups, no
        valid ROI table, tables that mix ``chi_reference`` or ``atlas`` values, or
        ``participants.tsv`` columns that clash with ROI table columns.
    """
    start_s = time.perf_counter()
    out_dir = Path(out_dir)
    if statistic not in PPM_STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(PPM_STATISTICS)}; got {statistic!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")

    participants = read_participants(participants_tsv) if participants_tsv is not None else None
    if group_by is not None:
        if participants is None:
            raise ValueError(f"group_by={group_by!r} needs a participants.tsv, but none was given")
        available = [c for c in participants.columns if c != "participant_id"]
        if group_by not in available:
            raise ValueError(
                f"group_by column {group_by!r} is not in {participants_tsv}; "
                f"available columns: {', '.join(map(str, available)) or '(none)'}"
            )

    long, skipped, participants_with_files = _collect(out_dir)
    if long.empty:
        raise ValueError(
            f"None of the ROI tables under {out_dir} could be used:\n" + "\n".join(skipped)
        )
    for column in PROVENANCE_COLUMNS:
        used = long.groupby(column)["participant_id"].unique()
        if len(used) > 1:
            detail = "; ".join(f"{value!r}: {', '.join(ids)}" for value, ids in used.items())
            raise ValueError(
                f"ROI tables under {out_dir} mix {column} values, which are not comparable "
                f"({detail}). Rerun those participants with the same settings."
            )

    table_ids = set(long["participant_id"])
    if participants is None:
        participants = pd.DataFrame({"participant_id": sorted(table_ids)})
    else:
        clash = [c for c in participants.columns if c != "participant_id" and c in long.columns]
        if clash:
            raise ValueError(
                f"{participants_tsv} has columns that clash with the ROI table columns: "
                f"{', '.join(clash)}"
            )
        listed = set(participants["participant_id"])
        for pid in participants["participant_id"]:
            if pid in table_ids:
                continue
            if pid in participants_with_files:
                skipped.append(f"{pid}: no usable ROI table (every table was skipped)")
            else:
                skipped.append(f"{pid}: no ROI table found")
        for pid in sorted(table_ids - listed):
            skipped.append(f"{pid}: not in participants.tsv; kept, with empty covariates")

    long_table = long.merge(participants, on="participant_id", how="left", validate="m:1")

    scan_values = _roi_values(long, statistic)
    wide_table = scan_values.copy()
    wide_table.columns = [_flat_name(pair) for pair in wide_table.columns]
    wide_table = wide_table.reset_index().merge(
        participants, on="participant_id", how="left", validate="m:1"
    )
    summary = summarize(scan_values, statistic)

    # One value per participant for the inferential statistics.
    participant_values = scan_values.groupby(level="participant_id").mean()
    covariates = participants.set_index("participant_id")

    comparisons = None
    groups = None
    if group_by is not None:
        groups = covariates[group_by].reindex(participant_values.index)
        for pid in groups.index[groups.isna()]:
            if pid in covariates.index:
                reason = f"{group_by} is n/a"
            else:
                reason = "not in participants.tsv"
            skipped.append(f"{pid}: {reason}; left out of the group comparison")
        comparisons = compare_groups(participant_values, groups, alpha=alpha)
        comparisons["statistic"] = statistic

    age_regression = None
    if AGE_COLUMN in covariates.columns:
        age_raw = covariates[AGE_COLUMN].reindex(participant_values.index)
        age_years = pd.to_numeric(age_raw, errors="coerce")
        for pid in age_years.index[age_years.isna() & age_raw.notna()]:
            skipped.append(
                f"{pid}: age {age_raw[pid]!r} is not a number; left out of the age regression"
            )
        n_ages = int(age_years.notna().sum())
        if n_ages >= MIN_AGE_VALUES:
            age_regression = regress_on_age(participant_values, age_years)
            age_regression["statistic"] = statistic
        else:
            skipped.append(
                f"age regression: {n_ages} participants with ROI values have a numeric "
                f"age, {MIN_AGE_VALUES} are needed"
            )

    figure = None
    if comparisons is not None:
        figure = plot_group_boxplot(
            participant_values,
            groups,
            statistic=statistic,
            group_by=group_by,
            comparisons=comparisons,
            alpha=alpha,
        )

    group_dir = out_dir / GROUP_DIRNAME
    group_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _atomic_write_csv(_output_path(group_dir, "long.csv"), long_table),
        _atomic_write_csv(_output_path(group_dir, "wide.csv"), wide_table),
        _atomic_write_csv(_output_path(group_dir, "summary.csv"), summary),
    ]
    optional = {
        "comparison.csv": comparisons,
        "boxplot.png": figure,
        "boxplot.svg": figure,
        "age.csv": age_regression,
    }
    for suffix, content in optional.items():
        path = _output_path(group_dir, suffix)
        if content is None:
            if path.exists():
                LOGGER.info("removing %s from an earlier run", path)
                path.unlink()
        elif isinstance(content, Figure):
            written.append(_atomic_write_figure(path, content))
        else:
            written.append(_atomic_write_csv(path, content))
    skipped_text = "".join(f"{line}\n" for line in skipped)
    written.append(
        atomic_write_bytes(_output_path(group_dir, "skipped.txt"), skipped_text.encode("utf-8"))
    )

    LOGGER.info(
        "group level: %d participants, %d scans, %d skipped notes, %d files in %s (%.1f s)",
        participant_values.shape[0],
        scan_values.shape[0],
        len(skipped),
        len(written),
        group_dir,
        time.perf_counter() - start_s,
    )
    return GroupResult(
        long_table=long_table,
        wide_table=wide_table,
        summary=summary,
        comparisons=comparisons,
        age_regression=age_regression,
        skipped=skipped,
        written=written,
    )
