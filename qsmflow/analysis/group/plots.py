"""Figures of the group level: one panel per ROI, every participant shown.

* :func:`plot_group_boxplot`: box plot with the participants on top, per group;
* :func:`plot_adjusted_means`: strip plot of the participants with the model's adjusted
  group means and their 95% confidence intervals;
* :func:`plot_chi_vs_age`: chi against age per nucleus, with the fitted line(s).

Figures are built on the Agg canvas (no pyplot state) and written reproducibly
(:func:`write_figure`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qsmflow.files import atomic_write_bytes

from .models import group_label

# Figure layout, in inches (matplotlib's unit) and data units of the x axis.
PANEL_WIDTH_IN = 2.4
PANEL_HEIGHT_IN = 3.0
BOX_WIDTH = 0.6
STRIP_HALF_WIDTH = 0.18
STRIP_MARKER_SIZE_PT = 4.0
MEAN_MARKER_SIZE_PT = 7.0
MEAN_OFFSET = 0.3  # adjusted mean drawn beside its strip
STRIP_ALPHA = 0.7
MARGIN_LEFT_IN, MARGIN_RIGHT_IN, MARGIN_BOTTOM_IN, MARGIN_TOP_IN = 0.8, 0.2, 0.6, 0.8
PANEL_SPACE = 0.45  # between panels, as a fraction of the mean panel size
FIGURE_DPI = 150
# Fixed so that the jitter of the strip plot, and so the figure, is reproducible.
STRIP_JITTER_SEED = 20240601
SVG_HASH_SALT = "qsmflow"


def _panel_grid(pairs) -> tuple[Figure, np.ndarray, list, int]:
    """One panel per (roi, hemisphere): rows are hemispheres, columns ROIs; a panel with
    no pair is hidden. Returns the figure, the axes, [(ax, roi, hemisphere, row, col)]
    and the number of rows."""
    rois = list(dict.fromkeys(roi for roi, _ in pairs))
    hemispheres = list(dict.fromkeys(hemi for _, hemi in pairs))
    fig, axes = _figure(len(hemispheres), len(rois))
    panels = []
    for row, hemisphere in enumerate(hemispheres):
        for col, roi in enumerate(rois):
            if (roi, hemisphere) in pairs:
                panels.append((axes[row, col], roi, hemisphere, row, col))
            else:
                axes[row, col].set_axis_off()
    return fig, axes, panels, len(hemispheres)


def _figure(n_rows: int, n_cols: int):
    """Panels on fixed margins: a layout engine (constrained, tight) would take most of
    the seconds a figure costs, and the panels are all alike."""
    width_in, height_in = PANEL_WIDTH_IN * n_cols, PANEL_HEIGHT_IN * n_rows
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={
        "left": MARGIN_LEFT_IN / width_in, "right": 1 - MARGIN_RIGHT_IN / width_in,
        "bottom": MARGIN_BOTTOM_IN / height_in, "top": 1 - MARGIN_TOP_IN / height_in,
        "wspace": PANEL_SPACE, "hspace": PANEL_SPACE})
    return fig, axes


def _title(roi: str, hemisphere: str, mark: str = "") -> str:
    return f"{roi.replace('_', ' ')} ({hemisphere}){mark}"


def _by_group(column: pd.Series, groups: pd.Series, labels: list[str]) -> list[np.ndarray]:
    return [column[groups.reindex(column.index).to_numpy() == g].dropna().to_numpy(float)
            for g in labels]


def _strips(ax, data: list[np.ndarray], positions: np.ndarray, rng) -> None:
    for position, x in zip(positions, data, strict=True):
        jitter = rng.uniform(-STRIP_HALF_WIDTH, STRIP_HALF_WIDTH, x.size)
        ax.plot(position + jitter, x, "o", markersize=STRIP_MARKER_SIZE_PT, alpha=STRIP_ALPHA)


def plot_group_boxplot(values: pd.DataFrame, groups: pd.Series, *, statistic: str,
                       group_by: str, comparisons: pd.DataFrame | None = None,
                       alpha: float = 0.05) -> Figure:
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
        Output of :func:`~qsmflow.analysis.group.models.compare_groups`.
    alpha : float
        The FDR level, for the caption.
    """
    groups = groups.dropna().map(group_label)
    groups = groups[groups.index.isin(values.index)]
    labels = sorted(groups.unique())
    pairs = list(values.columns)
    significant = set()
    if comparisons is not None:
        hits = comparisons[comparisons["significant_fdr"]]
        significant = set(zip(hits["roi"], hits["hemisphere"], strict=True))
    fig, axes, panels, n_rows = _panel_grid(pairs)
    rng = np.random.default_rng(STRIP_JITTER_SEED)
    positions = np.arange(len(labels), dtype=float)
    for ax, roi, hemisphere, _row, col in panels:
        data = _by_group(values[(roi, hemisphere)], groups, labels)
        drawn = [i for i, x in enumerate(data) if x.size]
        if drawn:
            ax.boxplot([data[i] for i in drawn], positions=positions[drawn],
                       widths=BOX_WIDTH, showfliers=False, medianprops={"color": "black"})
        _strips(ax, data, positions, rng)
        ax.set_xticks(positions, labels)
        ax.set_xlim(positions[0] - 1 + BOX_WIDTH, positions[-1] + 1 - BOX_WIDTH)
        mark = " *" if (roi, hemisphere) in significant else ""
        ax.set_title(_title(roi, hemisphere, mark), fontsize="medium")
        if col == 0:
            ax.set_ylabel(statistic)
    fig.suptitle(f"{statistic} by {group_by}; * Welch test significant at FDR {alpha:g}")
    return fig


def plot_adjusted_means(values: pd.DataFrame, groups: pd.Series, adjusted: pd.DataFrame, *,
                        statistic: str, group_by: str, formula: str,
                        significant: set | None = None) -> Figure:
    """Strip plot of every observation with the model's adjusted group means and 95% CIs.

    Parameters
    ----------
    values : DataFrame
        One row per observation, columns (roi, hemisphere); the first index level is
        participant_id.
    groups : Series
        Group label per row of ``values`` (same index).
    adjusted : DataFrame
        roi, hemisphere, level, mean, ci_low, ci_high (see
        :func:`~qsmflow.analysis.group.models.adjusted_means`).
    statistic, group_by, formula : str
        Labels.
    significant : set of (roi, hemisphere), optional
        Panels marked ``*`` (a group term with q_fdr below the level).
    """
    groups = groups.map(lambda v: group_label(v) if pd.notna(v) else v)
    labels = sorted(groups.dropna().unique())
    pairs = list(values.columns)
    fig, axes, panels, n_rows = _panel_grid(pairs)
    rng = np.random.default_rng(STRIP_JITTER_SEED)
    positions = np.arange(len(labels), dtype=float)
    for ax, roi, hemisphere, _row, col in panels:
        _strips(ax, _by_group(values[(roi, hemisphere)], groups, labels), positions, rng)
        here = adjusted[(adjusted["roi"] == roi) & (adjusted["hemisphere"] == hemisphere)]
        for position, label in zip(positions, labels, strict=True):
            level = here[here["level"] == label]
            if level.empty:
                continue
            mean = float(level["mean"].iloc[0])
            ax.errorbar(position + MEAN_OFFSET, mean, yerr=[
                [mean - float(level["ci_low"].iloc[0])],
                [float(level["ci_high"].iloc[0]) - mean]],
                fmt="D", color="black", markersize=MEAN_MARKER_SIZE_PT, capsize=3)
        ax.set_xticks(positions, labels)
        ax.set_xlim(positions[0] - 0.6, positions[-1] + 0.6)
        mark = " *" if significant and (roi, hemisphere) in significant else ""
        ax.set_title(_title(roi, hemisphere, mark), fontsize="medium")
        if col == 0:
            ax.set_ylabel(statistic)
    fig.suptitle(f"{statistic} by {group_by}: participants and adjusted means "
                 f"(95% CI) of {formula}; * group term q_fdr < 0.05")
    return fig


def plot_chi_vs_age(values: pd.DataFrame, age_years: pd.Series, lines: pd.DataFrame, *,
                    statistic: str, groups: pd.Series | None = None,
                    caption: str = "") -> Figure:
    """Chi against age, one panel per ROI (columns) and hemisphere (rows).

    Parameters
    ----------
    values : DataFrame
        One row per observation, columns (roi, hemisphere).
    age_years : Series
        Age per row of ``values``.
    lines : DataFrame
        roi, hemisphere, level, age, chi: the fitted line(s); ``level`` "" for one
        line per panel, else one line per group level.
    groups : Series, optional
        Group label per row of ``values``, for the colours.
    """
    pairs = list(values.columns)
    fig, axes, panels, n_rows = _panel_grid(pairs)
    labels = [""] if groups is None else sorted(groups.dropna().map(group_label).unique())
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    for ax, roi, hemisphere, row, col in panels:
        column = values[(roi, hemisphere)]
        for label in labels:
            keep = np.ones(len(column), bool) if groups is None else \
                (groups.map(lambda v: group_label(v) if pd.notna(v) else "").to_numpy()
                 == label)
            ax.plot(age_years.to_numpy(float)[keep], column.to_numpy(float)[keep], "o",
                    markersize=STRIP_MARKER_SIZE_PT, alpha=STRIP_ALPHA,
                    color=colours[label], label=label or None)
        here = lines[(lines["roi"] == roi) & (lines["hemisphere"] == hemisphere)]
        for label, line in here.groupby("level", sort=True):
            ax.plot(line["age"], line["chi"], "-", color=colours.get(label, "black"))
        ax.set_title(_title(roi, hemisphere), fontsize="medium")
        if col == 0:
            ax.set_ylabel(statistic)
        if row == n_rows - 1:
            ax.set_xlabel("age (years)")
    if groups is not None:
        axes[0, 0].legend(fontsize="small")
    fig.suptitle(f"{statistic} against age; lines: {caption}")
    return fig


def write_figure(path: Path, fig: Figure) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (png, svg)."""
    buffer = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".")
    # No date in the SVG and a fixed hash salt make the SVG reproducible.
    metadata = {"Date": None} if fmt == "svg" else None
    with rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(buffer, format=fmt, dpi=FIGURE_DPI, metadata=metadata)
    return atomic_write_bytes(path, buffer.getvalue())
