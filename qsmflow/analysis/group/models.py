"""Group statistics of ROI susceptibility: formula models, paired and nonparametric tests.

* :func:`fit_roi_models`: one linear model per ROI and hemisphere from a formula such as
  ``chi ~ group + age + sex`` (patsy design, statsmodels OLS; a linear mixed model with
  a random intercept per participant when participants have more than one session);
* :func:`adjusted_means` and :func:`fitted_line`: what the figures draw of a model.

Every family of p-values is adjusted with Benjamini-Hochberg (:func:`fdr_bh`). The
tests without a model (paired, Welch, Mann-Whitney, simple age regression) are in
:mod:`qsmflow.analysis.group.univariate`.

References
----------
Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and
powerful approach to multiple testing. J R Stat Soc B 1995;57:289-300.
Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics
1982;38:963-974.
Lakens D. Calculating and reporting effect sizes to facilitate cumulative science.
Front Psychol 2013;4:863 (adjusted d, d_z and partial eta squared).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import patsy
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .collect import BILATERAL, LATERALITY

RESPONSE = "chi"  # the left-hand side of every formula: each ROI's statistic in turn
PARTICIPANT = "participant_id"
CONFIDENCE = 0.95
MODEL_COLUMNS = ("roi", "hemisphere", "term", "estimate", "se", "ci_low", "ci_high", "p",
                 "q_fdr", "effect_size", "n")
EFFECT_SIZE_KINDS = {
    "cohens_d": "coefficient / residual SD (adjusted Cohen's d); for a mixed model the "
                "residual SD is sqrt(random-intercept variance + residual variance)",
    "partial_eta_squared": "F df1 / (F df1 + df2) of the term's Wald F test (the whole "
                           "factor for a factor of more than two levels)",
    "cohens_dz": "mean within-participant difference / SD of the differences",
}


def fdr_bh(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite entries; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(p[finite], method="bh")
    return adjusted


def fdr_family(hemisphere: pd.Series) -> pd.Series:
    """FDR family of each row: ROI x hemisphere rows form one, pooled and lateralised rows
    their own, so that a bilateral row never counts twice against its hemispheres."""
    return hemisphere.where(hemisphere.isin([BILATERAL, LATERALITY]), "hemispheric")


def group_label(value) -> str:
    """Group value as text: 1.0 (an integer column with n/a read as float) -> "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def formula_variables(formula: str) -> list[str]:
    """The data columns a formula uses on its right-hand side, in order of appearance.

    Raises
    ------
    ValueError
        If the formula does not parse or its left-hand side is not ``chi``.
    """
    try:
        desc = patsy.ModelDesc.from_formula(formula)
    except patsy.PatsyError as err:
        raise ValueError(f"--group-model {formula!r} is not a valid formula: {err}") from err
    lhs = [factor.name() for term in desc.lhs_termlist for factor in term.factors]
    if lhs != [RESPONSE]:
        raise ValueError(f"--group-model {formula!r} must have {RESPONSE!r} alone on the left "
                         f"(e.g. '{RESPONSE} ~ group + age'); {RESPONSE} stands for each ROI.")
    names: list[str] = []
    for term in desc.rhs_termlist:
        for factor in term.factors:
            # A factor is code such as "age", "C(sex)" or "np.log(age)"; its variables
            # are the names in that code that are not functions.
            for name in patsy.eval.ast_names(factor.code):
                if name not in names and name not in ("C", "np", "I", "Q", "center",
                                                      "standardize", "scale", "Treatment",
                                                      "Sum", "Poly", "Diff", "Helmert"):
                    names.append(name)
    return names


@dataclass
class ROIFit:
    """A fitted model of one ROI: the statsmodels result and what built its design."""

    result: object
    design_info: patsy.DesignInfo
    data: pd.DataFrame  # the rows used, with column "chi"
    mixed: bool


def _effect_size(fit: ROIFit, term: patsy.desc.Term, columns: slice) -> tuple[float, str]:
    factors = term.factors
    info = fit.design_info.factor_infos
    names = fit.design_info.column_names[columns]
    params = fit.result.params
    if len(factors) == 1 and info[factors[0]].type == "categorical" \
            and len(info[factors[0]].categories) == 2:
        residual_var = float(fit.result.scale)
        if fit.mixed:
            residual_var += float(np.asarray(fit.result.cov_re)[0, 0])
        return float(params[names[0]]) / np.sqrt(residual_var), "cohens_d"
    restriction = np.zeros((len(names), len(params)))
    for row, name in enumerate(names):
        restriction[row, list(params.index).index(name)] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = fit.result.f_test(restriction)
    f_value, df_num = float(np.squeeze(test.fvalue)), float(test.df_num)
    df_denom = float(test.df_denom) if not fit.mixed else \
        float(fit.result.nobs - len(fit.result.fe_params))
    return f_value * df_num / (f_value * df_num + df_denom), "partial_eta_squared"


def fit_one(data: pd.DataFrame, formula: str, *, groups: str | None) -> ROIFit:
    """OLS of ``formula`` on ``data``, or with ``groups`` a random-intercept MixedLM.

    Rows with a missing value in a used column are dropped (patsy's default).
    """
    y, x = patsy.dmatrices(formula, data, return_type="dataframe", NA_action="drop")
    used = data.loc[y.index]
    if groups is None:
        result = sm.OLS(y[RESPONSE], x).fit()
    else:
        with warnings.catch_warnings():
            # Boundary fits (random-intercept variance 0) warn; the estimate is still
            # the maximum of the REML likelihood.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = sm.MixedLM(y[RESPONSE], x, groups=used[groups]).fit(reml=True)
    return ROIFit(result, x.design_info, used.assign(**{RESPONSE: y[RESPONSE]}),
                  groups is not None)


def tidy(fit: ROIFit) -> pd.DataFrame:
    """One row per coefficient except the intercept: term, estimate ... effect_size, n."""
    rows, kinds = [], {}
    ci = fit.result.conf_int(1.0 - CONFIDENCE)
    for term, columns in fit.design_info.term_slices.items():
        if not term.factors:  # the intercept
            continue
        size, kind = _effect_size(fit, term, columns)
        for name in fit.design_info.column_names[columns]:
            kinds[name] = kind
            rows.append({"term": name, "estimate": float(fit.result.params[name]),
                         "se": float(fit.result.bse[name]), "ci_low": float(ci.loc[name, 0]),
                         "ci_high": float(ci.loc[name, 1]),
                         "p": float(fit.result.pvalues[name]), "effect_size": size,
                         "effect_size_kind": kind, "n": int(fit.result.nobs)})
    return pd.DataFrame(rows)


def model_rows(values: pd.DataFrame, covariates: pd.DataFrame) -> pd.DataFrame:
    """The index of ``values`` (participant_id[, session]) as columns, with covariates.

    Raises
    ------
    ValueError
        If a covariate is named like a column the model provides (chi, session).
    """
    frame = values.index.to_frame(index=False)
    clash = [c for c in covariates.columns if c in (RESPONSE, *frame.columns)]
    if clash:
        raise ValueError(f"participants.tsv columns {', '.join(clash)} clash with the "
                         f"names the group model provides ({RESPONSE}, session); rename them.")
    return frame.merge(covariates, left_on=PARTICIPANT, right_index=True, how="left")


def fit_roi_models(values: pd.DataFrame, formula: str, *,
                   covariates: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[str]]:
    """Fit ``formula`` to every ROI and hemisphere.

    Parameters
    ----------
    values : DataFrame
        One row per observation, indexed by participant_id or (participant_id,
        session); one column per (roi, hemisphere) pair, each modelled in turn as
        ``chi``. When a participant has more than one row the model is a MixedLM with a
        random intercept per participant (REML), else OLS.
    formula : str
        Patsy formula with ``chi`` on the left, e.g. ``"chi ~ group + age"``; the
        right-hand side names columns of ``covariates``, and ``session``.
    covariates : DataFrame
        Per-participant columns (index participant_id).

    Returns
    -------
    table : DataFrame
        :data:`MODEL_COLUMNS` plus ``effect_size_kind``; ``q_fdr`` is Benjamini-Hochberg
        within each term over the rows of one :func:`fdr_family`.
    fits : dict
        (roi, hemisphere) -> :class:`ROIFit`.
    notes : list of str
        ROIs that could not be fitted, and why.
    """
    base = model_rows(values, covariates)
    mixed = bool(base[PARTICIPANT].duplicated().any())
    tables, fits, notes = [], {}, []
    for pair in values.columns:
        frame = base.assign(**{RESPONSE: values[pair].to_numpy(float)})
        try:
            fit = fit_one(frame, formula, groups=PARTICIPANT if mixed else None)
        except (patsy.PatsyError, ValueError, np.linalg.LinAlgError) as err:
            notes.append(f"{pair[0]} ({pair[1]}): model not fitted ({err})")
            continue
        if fit.result.nobs <= len(fit.design_info.column_names) + 1:
            notes.append(f"{pair[0]} ({pair[1]}): model not fitted ({int(fit.result.nobs)} "
                         "observations are too few for its terms)")
            continue
        fits[pair] = fit
        tables.append(tidy(fit).assign(roi=pair[0], hemisphere=pair[1]))
    if not tables:
        return pd.DataFrame(columns=[*MODEL_COLUMNS, "effect_size_kind"]), fits, notes
    table = pd.concat(tables, ignore_index=True)
    family = fdr_family(table["hemisphere"])
    table["q_fdr"] = table.groupby([table["term"], family])["p"].transform(fdr_bh)
    return table[[*MODEL_COLUMNS, "effect_size_kind"]], fits, notes


def adjusted_means(fit: ROIFit, variable: str) -> pd.DataFrame:
    """Model-adjusted mean of ``chi`` at each level of ``variable``, with its 95% CI.

    The mean over the fitted rows of the prediction with every row set to the level
    (the other covariates as observed): a marginal mean. Its variance is
    x' Cov(beta) x for the averaged design row x.
    """
    levels = sorted(fit.data[variable].dropna().unique(), key=group_label)
    names = list(fit.design_info.column_names)
    beta = fit.result.params[names].to_numpy(float)
    cov = fit.result.cov_params().loc[names, names].to_numpy(float)
    crit = (stats.t.ppf(0.5 + CONFIDENCE / 2, fit.result.df_resid) if not fit.mixed
            else stats.norm.ppf(0.5 + CONFIDENCE / 2))
    out = []
    for level in levels:
        design = patsy.build_design_matrices([fit.design_info], fit.data.assign(
            **{variable: level}), return_type="dataframe")[0]
        x = design.mean(axis=0).to_numpy(float)
        mean, se = float(x @ beta), float(np.sqrt(x @ cov @ x))
        out.append({"level": group_label(level), "mean": mean, "ci_low": mean - crit * se,
                    "ci_high": mean + crit * se})
    return pd.DataFrame(out)


def fitted_line(fit: ROIFit, variable: str, grid: np.ndarray, by: str | None) -> pd.DataFrame:
    """Model prediction of ``chi`` along ``grid`` values of ``variable`` (other covariates
    averaged over the fitted rows), one line per level of ``by``.

    Returns columns level ("" without ``by``), ``variable`` and chi.
    """
    levels = [None] if by is None else sorted(fit.data[by].dropna().unique(), key=group_label)
    names = list(fit.design_info.column_names)
    beta = fit.result.params[names].to_numpy(float)
    frames = []
    for level in levels:
        for value in grid:
            frame = fit.data.assign(**{variable: value, "_level": "" if level is None else
                                       group_label(level), "_value": float(value)})
            frames.append(frame if level is None else frame.assign(**{by: level}))
    stacked = pd.concat(frames, ignore_index=True)
    design = patsy.build_design_matrices([fit.design_info], stacked, return_type="dataframe")[0]
    stacked[RESPONSE] = design.to_numpy(float) @ beta
    line = stacked.groupby(["_level", "_value"], sort=True)[RESPONSE].mean().reset_index()
    return line.rename(columns={"_level": "level", "_value": variable})
