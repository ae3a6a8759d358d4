"""What the group figures show of the fitted models: the data behind each figure.

Glue between :mod:`~qsmflow.analysis.group.models` (numbers) and
:mod:`~qsmflow.analysis.group.plots` (drawing): which variable is "the group", the
adjusted means per ROI, and the fitted chi-age lines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .collect import LATERALITY
from .models import PARTICIPANT, adjusted_means, fitted_line, formula_variables
from .plots import plot_adjusted_means, plot_chi_vs_age

AGE = "age"
SESSION = "session"
AGE_GRID_POINTS = 20
SIGNIFICANCE_Q = 0.05


def _row_values(values: pd.DataFrame, covariates: pd.DataFrame, variable: str) -> pd.Series:
    """``variable`` for every row of ``values`` (a covariate, or the session label)."""
    rows = values.index.to_frame(index=False)
    if variable in rows.columns:
        return pd.Series(rows[variable].to_numpy(), index=values.index)
    return pd.Series(covariates[variable].reindex(rows[PARTICIPANT]).to_numpy(),
                     index=values.index)


def group_variable(formula: str, covariates: pd.DataFrame, group_by: str | None) -> str | None:
    """The categorical variable the figures split by: ``group_by`` when the formula has
    it, else the formula's first non-numeric covariate (session last)."""
    names = formula_variables(formula)
    if group_by in names:
        return group_by
    for name in names:
        if name in covariates.columns and not pd.api.types.is_numeric_dtype(covariates[name]):
            return name
    return SESSION if SESSION in names else None


def _plotted(values: pd.DataFrame, fits: dict) -> list:
    return [pair for pair in values.columns if pair in fits and pair[1] != LATERALITY]


def adjusted_figure(values: pd.DataFrame, table: pd.DataFrame, fits: dict, formula: str,
                    covariates: pd.DataFrame, group_by: str | None,
                    statistic: str) -> Figure | None:
    """Strip plot with the adjusted means of the group variable; None without one."""
    variable = group_variable(formula, covariates, group_by)
    if variable is None:
        return None
    pairs = _plotted(values, fits)
    adjusted = pd.concat([adjusted_means(fits[pair], variable).assign(
        roi=pair[0], hemisphere=pair[1]) for pair in pairs], ignore_index=True)
    hits = table[table["term"].str.startswith(f"{variable}[") & (table["q_fdr"] < SIGNIFICANCE_Q)]
    significant = set(zip(hits["roi"], hits["hemisphere"], strict=True))
    return plot_adjusted_means(values[pairs], _row_values(values, covariates, variable),
                               adjusted, statistic=statistic, group_by=variable,
                               formula=formula, significant=significant)


def age_figure(model_values: pd.DataFrame, participant_values: pd.DataFrame,
               regression: pd.DataFrame | None, fits: dict | None, formula: str | None,
               covariates: pd.DataFrame, group_by: str | None, statistic: str) -> Figure:
    """Chi against age per nucleus: the model's lines when it has an age term (one per
    level of its group variable), else the simple regression's line."""
    if fits and AGE in formula_variables(formula):
        by = group_variable(formula, covariates, group_by)
        pairs = _plotted(model_values, fits)
        values = model_values[pairs]
        age = pd.to_numeric(_row_values(values, covariates, AGE), errors="coerce")
        grid = np.linspace(age.min(), age.max(), AGE_GRID_POINTS)
        lines = pd.concat([fitted_line(fits[pair], AGE, grid, by).assign(
            roi=pair[0], hemisphere=pair[1]) for pair in pairs], ignore_index=True)
        caption = f"{formula}" + (f", per {by}" if by else "")
    else:
        by = group_by
        pairs = list(zip(regression["roi"], regression["hemisphere"], strict=True))
        values = participant_values[pairs]
        age = pd.to_numeric(_row_values(values, covariates, AGE), errors="coerce")
        grid = np.linspace(age.min(), age.max(), AGE_GRID_POINTS)
        lines = pd.concat([pd.DataFrame({
            "roi": row.roi, "hemisphere": row.hemisphere, "level": "", AGE: grid,
            "chi": row.intercept_ppm + row.slope_ppm_per_year * grid})
            for row in regression.itertuples()], ignore_index=True)
        caption = "least-squares line of chi on age (no covariates)"
    groups = _row_values(values, covariates, by) if by else None
    return plot_chi_vs_age(values, age, lines, statistic=statistic, groups=groups,
                           caption=caption)
