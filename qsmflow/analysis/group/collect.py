"""Gathering the participants' ROI tables for the group level, and their quality checks.

The participant level writes one ROI table per scan,
``sub-<label>[/ses-<label>]/anat/*_desc-deepgm_chistats.csv``. This module reads and
validates them, joins the covariates of ``participants.tsv``, derives the pooled
(volume-weighted bilateral) and lateralised values, and flags outlying scans.

Outliers are flagged with a robust z-score, (x - median) / (1.4826 MAD), because the
classical z-score of n values can never exceed (n - 1) / sqrt(n) (2.85 for n = 10): an
outlier inflates the SD that is meant to expose it. Where more than half of the values
are equal (MAD = 0), the mean absolute deviation about the median stands in for it.

References
----------
Leys C, Ley C, Klein O, Bernard P, Licata L. Detecting outliers: do not use standard
deviation around the mean, use absolute deviation around the median. J Exp Soc Psychol
2013;49:764-766.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from qsmflow.data import data_path

LOGGER = logging.getLogger(__name__)

ROI_TABLE_PATTERN = "sub-*/**/anat/*_desc-deepgm_chistats.csv"
RUN_SUMMARY_PATTERN = "logs/qsmflow_*_summary.json"
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
# Written by the participant level since the reference regions and QC values were added;
# tables of older runs lack them, and they are read as missing.
REFERENCE_COLUMNS = ("chi_reference_ppm", "ref_whole_brain_ppm", "ref_csf_ppm", "ref_wm_ppm")
SCAN_QC_COLUMNS = ("mask_volume_mm3", "registration_similarity")
OPTIONAL_FLOAT_COLUMNS = (*REFERENCE_COLUMNS, *SCAN_QC_COLUMNS)
# Columns that must be the same in every table for the values to be comparable.
PROVENANCE_COLUMNS = ("chi_reference", "atlas")
# Statistics that may be analysed; all are susceptibilities in ppm.
PPM_STATISTICS = ("mean_ppm", "median_ppm", "std_ppm", "p25_ppm", "p75_ppm")
# The one statistic whose bilateral value follows exactly from the two hemispheres: the
# mean over the union of their voxels is the voxel-count-weighted mean of the two.
POOLABLE_STATISTIC = "mean_ppm"

HEMISPHERES = ("left", "right")
BILATERAL = "bilateral"
LATERALITY = "laterality"  # left - right, in ppm

# Cell values read as missing: BIDS writes "n/a", spreadsheets write the others.
MISSING_TOKENS = ("", "n/a", "N/A", "NA", "nan", "NaN")
PARTICIPANT_PREFIX = "sub-"

OUTLIER_Z = 3.0
# sqrt(pi / 2): the SD of a normal distribution over its mean absolute deviation.
MEAN_AD_TO_SD = 1.2533141373155001
# Fewer values than this give no useful median and MAD.
MIN_VALUES_FOR_QC = 5


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


def sorted_roi_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Unique (roi, hemisphere) pairs in the atlas order, unknown ones last."""
    return sorted(set(pairs), key=_roi_sort_key)


def _normalize_participant_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith(PARTICIPANT_PREFIX) else PARTICIPANT_PREFIX + value


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _numbers(text: pd.Series, column: str, integer: bool) -> tuple[pd.Series | None, str]:
    is_missing = text.isin(MISSING_TOKENS)
    number = pd.to_numeric(text.mask(is_missing), errors="coerce")
    bad = number.isna() & ~is_missing
    if bad.any():
        return None, f"non-numeric {column} value {text[bad].iloc[0]!r}"
    if integer:
        if number.isna().any() or (number != np.round(number)).any():
            return None, f"{column} must be whole numbers, with none missing"
        number = number.astype(np.int64)
    return number, ""


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
    table = pd.DataFrame(index=raw.index)
    for column in (*REQUIRED_COLUMNS, *OPTIONAL_FLOAT_COLUMNS):
        if column not in raw.columns:
            table[column] = np.nan
            continue
        text = raw[column].str.strip()
        if column in INTEGER_COLUMNS or column in FLOAT_COLUMNS + OPTIONAL_FLOAT_COLUMNS:
            number, reason = _numbers(text, column, column in INTEGER_COLUMNS)
            if number is None:
                return None, reason
            table[column] = number
        else:
            table[column] = text.mask(text.isin(MISSING_TOKENS), "")

    for column in ("participant_id", *ROI_KEY_COLUMNS):
        if (table[column] == "").any():
            return None, f"empty {column} values"
    if table["hemisphere"].isin([BILATERAL, LATERALITY]).any():
        return None, f"hemisphere {BILATERAL!r}/{LATERALITY!r} is reserved for the group level"
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


def collect_roi_tables(out_dir: Path) -> tuple[pd.DataFrame, list[str], set[str]]:
    """Read and concatenate every participant's deep gray matter ROI table.

    Parameters
    ----------
    out_dir : Path
        Derivatives directory of the participant level; tables are found with
        :data:`ROI_TABLE_PATTERN`, with or without a session level.

    Returns
    -------
    table : DataFrame
        The rows of every valid table: :data:`REQUIRED_COLUMNS`, then
        :data:`OPTIONAL_FLOAT_COLUMNS` (NaN where a table lacks them). Empty
        session/acq/run are ``""``. Empty (with those columns) when no table was valid.
    skipped : list of str
        ``"<file relative to out_dir>: <reason>"`` for each table left out: unreadable,
        missing required columns, non-numeric values, a participant_id that differs
        from its ``sub-*`` directory, or rows already read from another file.
    participants_with_files : set of str
        Participants with at least one table file, valid or not.

    Raises
    ------
    FileNotFoundError
        If no file matches the pattern.
    """
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
    columns = (*REQUIRED_COLUMNS, *OPTIONAL_FLOAT_COLUMNS)
    if tables:
        long = pd.concat(tables, ignore_index=True)
    else:
        long = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return long, skipped, participants_with_files


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
    table = pd.read_csv(participants_tsv, sep="\t", dtype={"participant_id": str},
                        na_values=list(MISSING_TOKENS), keep_default_na=False)
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


def failed_runs(out_dir: Path) -> dict[str, str]:
    """Runs whose newest participant-level summary (``logs/*_summary.json``) is a failure.

    Returns ``{run label: first line of the failure message}``; a later success of the
    same run removes it.
    """
    failed: dict[str, str] = {}
    for path in sorted(Path(out_dir).glob(RUN_SUMMARY_PATTERN)):  # names sort by time
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            LOGGER.warning("cannot read run summary %s: %s", path, err)
            continue
        for label in summary.get("succeeded", []):
            failed.pop(label, None)
        for label, message in (summary.get("failed") or {}).items():
            failed[label] = f"{str(message).splitlines()[0] if message else 'failed'} ({path.name})"
    return failed


def roi_values(long: pd.DataFrame, statistic: str, *, laterality: bool = False) -> pd.DataFrame:
    """Scans x (roi, hemisphere) table of ``statistic``, with pooled columns added.

    For ``mean_ppm``, each ROI found in both hemispheres gets a ``bilateral`` column: the
    mean over the voxels of both, i.e. the voxel-count-weighted mean of the two. With
    ``laterality``, a ``laterality`` column holds left - right in ppm (a difference, not
    the ratio (L - R) / (L + R), which is unstable because referenced chi is near zero in
    some nuclei, e.g. the thalamus). Either is NaN where a hemisphere is missing.
    """
    index = [*ENTITY_COLUMNS, *ROI_KEY_COLUMNS]
    values = long.set_index(index)[statistic].unstack(list(ROI_KEY_COLUMNS))
    counts = long.set_index(index)["n_voxels"].unstack(list(ROI_KEY_COLUMNS))
    pairs = sorted_roi_pairs(values.columns)
    values = values[pairs].sort_index()
    rois = [roi for roi in dict.fromkeys(r for r, _ in pairs)
            if all((roi, h) in pairs for h in HEMISPHERES)]
    extra = {}
    for roi in rois:
        left, right = values[(roi, "left")], values[(roi, "right")]
        if statistic == POOLABLE_STATISTIC:
            n_left, n_right = counts[(roi, "left")], counts[(roi, "right")]
            extra[(roi, BILATERAL)] = (left * n_left + right * n_right) / (n_left + n_right)
        if laterality:
            extra[(roi, LATERALITY)] = left - right
    if extra:
        values = pd.concat([values, pd.DataFrame(extra, index=values.index)], axis=1)
    return values


def hemispheric_columns(values: pd.DataFrame) -> list[tuple[str, str]]:
    """The (roi, hemisphere) columns measured per hemisphere: not pooled, not laterality."""
    return [pair for pair in values.columns if pair[1] not in (BILATERAL, LATERALITY)]


def _robust_z(x: pd.Series) -> pd.Series:
    finite = x.dropna()
    if finite.size < MIN_VALUES_FOR_QC:
        return pd.Series(np.nan, index=x.index)
    values = finite.to_numpy(float)
    spread = stats.median_abs_deviation(values, scale="normal")
    if not spread > 0:  # over half the values equal: the mean absolute deviation instead
        spread = MEAN_AD_TO_SD * np.mean(np.abs(values - np.median(values)))
    if not spread > 0:
        return pd.Series(np.nan, index=x.index)
    return (x - finite.median()) / spread


def flag_outliers(long: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Scans and ROI values with a robust ``|z| > OUTLIER_Z``.

    Per ROI and hemisphere: ``volume_mm3`` (a failed registration or segmentation) and
    ``statistic``; per scan: ``mask_volume_mm3`` and ``registration_similarity`` where the
    tables have them (then roi and hemisphere are ``""``).

    Returns
    -------
    DataFrame
        participant_id, session, acq, run, roi, hemisphere, measure, value, z; one row
        per flag, in table order.
    """
    columns = [*ENTITY_COLUMNS, *ROI_KEY_COLUMNS, "measure", "value", "z"]
    flags = []
    for measure in ("volume_mm3", statistic):
        z = long.groupby(list(ROI_KEY_COLUMNS))[measure].transform(_robust_z)
        hit = long[z.abs() > OUTLIER_Z]
        flags.append(hit[[*ENTITY_COLUMNS, *ROI_KEY_COLUMNS]].assign(
            measure=measure, value=hit[measure], z=z[hit.index]))
    scans = long.groupby(list(ENTITY_COLUMNS), sort=False)[list(SCAN_QC_COLUMNS)].first()
    for measure in SCAN_QC_COLUMNS:
        z = _robust_z(scans[measure])
        hit = scans[z.abs() > OUTLIER_Z]
        flags.append(hit.reset_index()[list(ENTITY_COLUMNS)].assign(
            roi="", hemisphere="", measure=measure, value=hit[measure].to_numpy(),
            z=z[hit.index].to_numpy()))
    table = pd.concat(flags, ignore_index=True)
    return table[columns] if not table.empty else pd.DataFrame(columns=columns)


def exclude_flagged(long: pd.DataFrame, flags: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """``long`` with ``statistic`` set to NaN where ``flags`` flag the ROI or its scan."""
    long = long.copy()
    key = [*ENTITY_COLUMNS, *ROI_KEY_COLUMNS]
    roi_flags = set(flags.loc[flags["roi"] != "", key].itertuples(index=False, name=None))
    scan_flags = set(flags.loc[flags["roi"] == "", list(ENTITY_COLUMNS)]
                     .itertuples(index=False, name=None))
    rows = list(long[key].itertuples(index=False, name=None))
    drop = np.array([row in roi_flags or row[:len(ENTITY_COLUMNS)] in scan_flags
                     for row in rows], dtype=bool)
    long.loc[drop, statistic] = np.nan
    return long

