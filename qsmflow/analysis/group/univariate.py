"""Statistics without a model: descriptive summary, paired sessions, two groups (Welch,
Mann-Whitney), age slope.

:func:`compare_groups` is the unadjusted, nonparametric option next to the formula
models of :mod:`qsmflow.analysis.group.models`; its Welch and Mann-Whitney tests ignore
covariates such as age, which confound a comparison of groups of different mean age.

References
----------
Student. The probable error of a mean. Biometrika 1908;6:1-25 (paired t-test).
Wilcoxon F. Individual comparisons by ranking methods. Biometrics Bull 1945;1:80-83.
Welch BL. The generalization of "Student's" problem when several different
population variances are involved. Biometrika 1947;34:28-35.
Mann HB, Whitney DR. On a test of whether one of two random variables is
stochastically larger than the other. Ann Math Stat 1947;18:50-60.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .models import CONFIDENCE, MODEL_COLUMNS, fdr_bh, fdr_family, group_label

# Welch's test needs a variance estimate in each group.
MIN_PER_GROUP = 2
# A regression line needs a third point before it has a residual (and a p-value).
MIN_AGE_VALUES = 3


def paired_tests(sessions: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                 session_a: str, session_b: str) -> pd.DataFrame:
    """Paired t-test and Wilcoxon signed-rank test of session b - session a per ROI.

    Parameters
    ----------
    sessions : DataFrame
        Index (participant_id, session), one column per (roi, hemisphere).
    pairs : sequence of (roi, hemisphere)
    session_a, session_b : str
        The two session labels; the estimate is the mean of b - a.

    Returns
    -------
    DataFrame
        :data:`MODEL_COLUMNS` (term ``"session[<b> - <a>]"``, effect size d_z), then
        wilcoxon_p and wilcoxon_q_fdr; q values are Benjamini-Hochberg over one
        :func:`fdr_family`. Participants without both sessions are left out.
    """
    rows = []
    for pair in pairs:
        wide = sessions[pair].unstack("session")
        both = wide[[session_a, session_b]].dropna()
        diff = (both[session_b] - both[session_a]).to_numpy(float)
        row = {"roi": pair[0], "hemisphere": pair[1], "term": f"session[{session_b} - "
               f"{session_a}]", "n": int(diff.size), "effect_size_kind": "cohens_dz"}
        if diff.size >= MIN_PER_GROUP and np.std(diff) > 0:
            test = stats.ttest_1samp(diff, 0.0)
            ci = test.confidence_interval(CONFIDENCE)
            row.update(estimate=diff.mean(), se=diff.std(ddof=1) / np.sqrt(diff.size),
                       ci_low=ci.low, ci_high=ci.high, p=test.pvalue,
                       effect_size=diff.mean() / diff.std(ddof=1),
                       wilcoxon_p=stats.wilcoxon(diff).pvalue)
        rows.append(row)
    table = pd.DataFrame(rows).reindex(
        columns=[*MODEL_COLUMNS, "wilcoxon_p", "effect_size_kind"])
    family = fdr_family(table["hemisphere"])
    table["q_fdr"] = table.groupby(family)["p"].transform(fdr_bh)
    table["wilcoxon_q_fdr"] = table.groupby(family)["wilcoxon_p"].transform(fdr_bh)
    return table


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
        The FDR adjustment runs over every row of the table, separately for each
        test. ``significant_fdr`` is ``welch_p_fdr < alpha``.

    Raises
    ------
    ValueError
        If fewer than two groups remain.
    """
    groups = groups.dropna().map(group_label)
    groups = groups[groups.index.isin(values.index)]
    labels = sorted(groups.unique())
    if len(labels) < 2:
        raise ValueError(
            f"Group comparison needs at least two groups with ROI values, found {labels}")
    blocks = []
    for group_a, group_b in itertools.combinations(labels, 2):
        # participants x ROIs; every ROI is tested in one vectorized call per pair.
        a = values.loc[groups.index[groups == group_a]].to_numpy(dtype=float)
        b = values.loc[groups.index[groups == group_b]].to_numpy(dtype=float)
        n_a, n_b = np.isfinite(a).sum(axis=0), np.isfinite(b).sum(axis=0)
        testable = (n_a >= MIN_PER_GROUP) & (n_b >= MIN_PER_GROUP)
        with warnings.catch_warnings():
            # Empty, tiny or constant groups give NaN or unreliable statistics; the
            # untestable ones are masked below, constant ones stay NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_a, mean_b = np.nanmean(a, axis=0), np.nanmean(b, axis=0)
            welch = stats.ttest_ind(a, b, axis=0, equal_var=False, nan_policy="omit")
            mw = stats.mannwhitneyu(a, b, axis=0, alternative="two-sided", nan_policy="omit")
        blocks.append(pd.DataFrame({
            "roi": [pair[0] for pair in values.columns],
            "hemisphere": [pair[1] for pair in values.columns],
            "group_a": group_a, "group_b": group_b, "n_a": n_a, "n_b": n_b,
            "mean_a": mean_a, "mean_b": mean_b,
            "welch_t": np.where(testable, np.asarray(welch.statistic, float), np.nan),
            "welch_p": np.where(testable, np.asarray(welch.pvalue, float), np.nan),
            "mannwhitney_u": np.where(testable, np.asarray(mw.statistic, float), np.nan),
            "mannwhitney_p": np.where(testable, np.asarray(mw.pvalue, float), np.nan),
        }))
    table = pd.concat(blocks, ignore_index=True)
    table["welch_p_fdr"] = fdr_bh(table["welch_p"])
    table["mannwhitney_p_fdr"] = fdr_bh(table["mannwhitney_p"])
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
        both = pd.concat([values[pair].rename("chi"), age_years.rename("age")], axis=1,
                         join="inner").dropna()
        slope = intercept = r = p = np.nan
        if len(both) >= MIN_AGE_VALUES and both["age"].nunique() > 1:
            fit = stats.linregress(both["age"].to_numpy(float), both["chi"].to_numpy(float))
            slope, intercept, r, p = fit.slope, fit.intercept, fit.rvalue, fit.pvalue
        rows.append({"roi": pair[0], "hemisphere": pair[1], "n": len(both),
                     "slope_ppm_per_year": slope, "intercept_ppm": intercept, "r": r, "p": p})
    table = pd.DataFrame(rows)
    table["p_fdr"] = fdr_bh(table["p"])
    return table


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
        q25, median, q75 = np.quantile(x, [0.25, 0.5, 0.75]) if x.size else (np.nan,) * 3
        rows.append({
            "roi": pair[0], "hemisphere": pair[1], "n": int(x.size),
            "n_participants": int(column.index.get_level_values("participant_id").nunique()),
            "mean": x.mean() if x.size else np.nan,
            "sd": x.std(ddof=1) if x.size > 1 else np.nan,
            "median": median, "q25": q25, "q75": q75, "iqr": q75 - q25,
            "statistic": statistic,
        })
    return pd.DataFrame(rows)
