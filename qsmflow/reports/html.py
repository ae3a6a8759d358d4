"""The per-participant HTML report: ``OUTPUT_DIR/sub-<label>.html``.

One page per participant shows, for every run, what the pipeline did and whether it
worked: slice mosaics of the first-echo magnitude with the brain mask, the total and
local field maps and the susceptibility map; the deep gray matter regions over chi and
their table; the run's parameters, the time and key number of each stage and the
warnings; then a methods paragraph with references, and the provenance record. A run
that failed gets a section saying in which stage and why.

This module gathers what the page shows into plain values; the markup lives in the
jinja2 templates under ``templates/`` (:mod:`.render`), and the figures are made by
:mod:`.run_figures`. The figures are PNG files beside the page, under
``sub-<label>[/ses-<label>]/figures/`` (next to the atlas registration figure),
referenced by relative links: the page reads offline, and the folder ``OUTPUT_DIR`` can
be moved or copied as a whole.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import nibabel as nib
import numpy as np
import pandas as pd

from qsmflow import __version__
from qsmflow.algorithms.bgremove import default_vsharp_radii_mm, describe_background_removal
from qsmflow.bids.naming import derivative_path, parse_label
from qsmflow.files import atomic_write_text

from .methods import (
    BGREMOVE_DESCRIPTIONS,
    METHOD_DESCRIPTIONS,
    cited_references,
    nsidl_weights_methods,
    qsm_methods,
    roi_methods,
)
from .render import render_page
from .run_figures import CHI_WINDOW_PPM, make_run_figures

_LABEL_KEYS = {"sub": "subject", "ses": "session", "acq": "acquisition", "run": "run"}
ROI_TABLE_COLUMNS = ("roi", "hemisphere", "n_voxels", "volume_mm3", "mean_ppm", "median_ppm",
                     "std_ppm", "p25_ppm", "p75_ppm")


@dataclass(frozen=True)
class RunInfo:
    """One run of the participant and how it ended.

    ``status`` is ``succeeded``, ``failed`` (``message`` says why) or ``submitted`` (a
    cluster job that had not finished when the report was written).
    """

    label: str
    status: str = "succeeded"
    message: str = ""


def entities_from_label(label: str) -> dict:
    """``sub-01_ses-pre_rec-norm_run-2`` -> ``{'subject': '01', 'session': 'pre', ...}``:
    every BIDS entity of the label (``bids.naming.parse_label``), with subject, session,
    acquisition and run always present (None when absent)."""
    return {**dict.fromkeys(_LABEL_KEYS.values()), **parse_label(label)}


def _relative_url(path: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(path, base)).as_posix())


def _figure(path: Path | None, base: Path, caption: str, problem: str = "",
            cls: str = "") -> dict:
    """A figure for the template; ``url`` is None when the PNG is missing."""
    url = _relative_url(path, base) if path is not None and path.is_file() else None
    return {"url": url, "caption": caption, "problem": problem, "cls": cls}


def _timing_rows(timings: Mapping[str, float], details: Mapping[str, str]) -> list:
    if not timings:
        return []
    rows = [(stage, f"{seconds:.1f}", details.get(stage, ""))
            for stage, seconds in timings.items()]
    rows.append(("total (sum of stages)", f"{sum(timings.values()):.1f}", ""))
    return rows


def _vsharp_radii_text(config: Mapping, voxel_size_mm) -> str:
    """The radii the run used: given, or QSM.jl's rule on the image's voxel size (which is
    what RemoveBackground applies)."""
    radii = config.get("vsharp_radii_mm") or []
    if radii:
        return f"{max(radii):g}-{min(radii):g} mm ({len(radii)} radii, given)"
    if voxel_size_mm is None:
        return "default rule: 18x the smallest voxel down to 2x the largest"
    radii = default_vsharp_radii_mm(voxel_size_mm)
    return (f"{radii.max():g}-{radii.min():g} mm ({len(radii)} radii; default: 18x the "
            "smallest voxel down to 2x the largest)")


def _parameters(sidecar: dict, config: Mapping, details: Mapping[str, str],
                chi_img: nib.Nifti1Image | None, roi_table: pd.DataFrame | None) -> list:
    rows = []
    te = sidecar.get("EchoTime")
    if te:
        te = te if isinstance(te, list) else [te]
        rows.append(("echo times", ", ".join(f"{t * 1e3:.2f}" for t in te) + " ms"
                     + f" ({len(te)} echo{'es' if len(te) > 1 else ''})"))
    if sidecar.get("EffectiveEchoTime") is not None:
        rows.append(("effective echo time (nonlinear inversion)",
                     f"{sidecar['EffectiveEchoTime'] * 1e3:.2f} ms"))
    if sidecar.get("MagneticFieldStrength") is not None:
        rows.append(("B0 field strength", f"{sidecar['MagneticFieldStrength']:g} T"))
    b0 = sidecar.get("B0DirectionVoxel")
    if b0:
        tilt = math.degrees(math.acos(min(abs(b0[2]) / (np.linalg.norm(b0) or 1), 1.0)))
        rows.append(("B0 direction (voxel axes)",
                     "(" + ", ".join(f"{x:.3f}" for x in b0) + f"), {tilt:.1f} deg from the "
                     "slice axis"))
    voxel_size = None
    if chi_img is not None:
        voxel_size = tuple(float(z) for z in chi_img.header.get_zooms()[:3])
        rows.append(("matrix, voxel size", " x ".join(str(n) for n in chi_img.shape[:3])
                     + ", " + " x ".join(f"{z:g}" for z in voxel_size) + " mm"))
    method = sidecar.get("DipoleInversionMethod") or config.get("inversion", "")
    rows.append(("dipole inversion", f"{method}: "
                 f"{METHOD_DESCRIPTIONS.get(method, '')}".rstrip(": ")))
    if sidecar.get("NSIDLWeightsSha256"):
        rows.append(("NSIDL weights sha256", sidecar["NSIDLWeightsSha256"]))
        rows.append(("device", config.get("device", "cpu")))
    if config.get("brain_mask_dir"):
        rows.append(("brain mask", f"given (--brain-mask-dir {config['brain_mask_dir']})"))
    else:
        threshold = config.get("mask_threshold")
        method = config.get("mask_method", "threshold")
        erode = config.get("mask_erode_mm")
        erode = (1.0 if method == "threshold" else 0.0) if erode is None else erode
        rows.append(("brain mask", "first-echo magnitude, "
                     + ({"deepbet": "deepbet, CSF rim removed by R2*",
                         "deepbet-intracranial": "deepbet (intracranial)"}.get(method)
                        or (f"threshold {threshold:g} of the robust maximum" if threshold
                            else "Otsu threshold"))
                     + f", erosion {erode:g} mm"
                     + (f"; {details['brain mask']}" if details.get("brain mask") else "")))
    refine = config.get("bgremove_refine", True)
    rows.append(("background removal", BGREMOVE_DESCRIPTIONS[config.get("bgremove", "lbv")]
                 + (" with dipole-model refinement" if refine else " (no refinement)")))
    if config.get("bgremove", "lbv") == "lbv":
        rows.append(("LBV peel", f"{config.get('lbv_peel_mm', 0.0):g} mm"))
    else:
        rows.append(("V-SHARP radii", _vsharp_radii_text(config, voxel_size)))
        rows.append(("V-SHARP TSVD threshold", f"{config.get('vsharp_threshold', 0.05):g}"))
    if roi_table is not None and len(roi_table):
        first = roi_table.iloc[0]
        rows.append(("ROI atlas", first.get("atlas", "")))
        rows.append(("chi reference", f"{first.get('chi_reference', '')} "
                     f"({first.get('chi_reference_ppm', float('nan')):.4f} ppm subtracted)"))
        rows.append(("ROI erosion", f"{float(first.get('roi_erosion_mm', 0.0)):g} mm"))
    return rows




def _roi_rows(table: pd.DataFrame) -> tuple[list, list]:
    columns = [c for c in ROI_TABLE_COLUMNS if c in table.columns]
    rows = []
    for _, row in table[columns].iterrows():
        cells = []
        for column in columns:
            value = row[column]
            if column.endswith("_ppm"):
                cells.append("" if pd.isna(value) else f"{value:+.4f}")
            elif column == "volume_mm3":
                cells.append(f"{value:.0f}")
            else:
                cells.append(value)
        rows.append(cells)
    return columns, rows


def _run_context(out_dir: Path, info: RunInfo, *, config: Mapping, timings: Mapping,
                 details: Mapping, warnings: Sequence[str], methods: list) -> dict:
    """What the run's section shows; appends the run's methods paragraph to ``methods``."""
    run = {"label": info.label, "status": info.status, "message": info.message,
           "badge": {"succeeded": "ok", "failed": "fail"}.get(info.status, "other"),
           "timings": _timing_rows(timings, details), "warnings": list(warnings)}
    if info.status != "succeeded":
        return run

    entities = entities_from_label(info.label)
    chi_path = derivative_path(out_dir, entities, "Chimap", ".nii.gz")
    sidecar_path = chi_path.with_name(chi_path.name.replace(".nii.gz", ".json"))
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    chi_img = nib.load(str(chi_path)) if chi_path.is_file() else None
    table_path = derivative_path(out_dir, {**entities, "description": "deepgm"}, "chistats",
                                 ".csv")
    roi_table = pd.read_csv(table_path) if table_path.is_file() else None
    made, problems = make_run_figures(out_dir, entities, info.label, sidecar,
                                      config.get("bids_dir"))

    run["images"] = [
        _figure(made.get(kind), out_dir, caption, problems.get(kind, problems.get("masks", "")))
        for kind, caption in (
            ("magnitude", "First-echo magnitude with the brain mask outline"),
            ("totalfield", "Total field (Hz): unwrapped, phase offset removed"),
            ("localfield", "Local field (Hz) after " + describe_background_removal(
                config.get("bgremove", "lbv"), config.get("bgremove_refine", True))),
            ("chi", f"Susceptibility chi (ppm), fixed window +-{CHI_WINDOW_PPM:g} ppm"))]
    run["rois"] = None
    if roi_table is not None:
        registration = derivative_path(out_dir, {**entities, "description": "atlasreg"},
                                       "qc", ".png", datatype="figures")
        header, rows = _roi_rows(roi_table)
        run["rois"] = {
            "figure": _figure(made.get("deepgm"), out_dir,
                              "Deep gray matter regions over chi (ppm)",
                              problems.get("deepgm", "")),
            "registration": _figure(registration, out_dir, "Atlas registration: template "
                                    "outline (red) and labels over the magnitude",
                                    cls="narrow") if registration.is_file() else None,
            "table_path": str(table_path.relative_to(out_dir)), "header": header,
            "rows": rows}
    run["parameters"] = _parameters(sidecar, config, details, chi_img, roi_table)

    te = sidecar.get("EchoTime")
    method = sidecar.get("DipoleInversionMethod") or config.get("inversion")
    if te and sidecar.get("MagneticFieldStrength") and method in METHOD_DESCRIPTIONS:
        text = qsm_methods(te if isinstance(te, list) else [te],
                           sidecar["MagneticFieldStrength"], method,
                           bgremove=config.get("bgremove", "lbv"),
                           bgremove_refine=config.get("bgremove_refine", True))
        if sidecar.get("NSIDLWeightsSha256"):
            text += nsidl_weights_methods(sidecar["NSIDLWeightsSha256"])
        if roi_table is not None and len(roi_table):
            first = roi_table.iloc[0]
            text += roi_methods(atlas=str(first.get("atlas", "")),
                                registered=not config.get("roi_labels_dir"),
                                chi_reference=str(first.get("chi_reference", "")),
                                roi_erode_mm=float(first.get("roi_erosion_mm", 0.0)))
        methods.append((info.label, text.strip(), sidecar.get("QsmflowProvenance")))
    return run


def _provenance(record: Mapping, out_dir: Path, record_path: Path | None) -> dict:
    software = record.get("qsmflow", {})
    rows = [("qsmflow version", software.get("version", "")),
            ("git commit", (software.get("git_hash") or "not a git checkout")
             + (" (with uncommitted changes)" if software.get("git_dirty") else "")),
            ("python", software.get("python", "")),
            ("command line", software.get("command_line", "")),
            ("started", software.get("started", "")),
            ("finished", software.get("finished", "") or "(still running)")]
    if software.get("nsidl_weights_sha256"):
        rows.append(("NSIDL weights sha256", software["nsidl_weights_sha256"]))
    return {
        "software": rows,
        "record_url": _relative_url(record_path, out_dir) if record_path is not None else None,
        "record_name": os.path.relpath(record_path, out_dir) if record_path is not None else "",
        "dependencies": sorted(record.get("dependencies", {}).items()),
        "config": [(k, json.dumps(v) if isinstance(v, (list, dict)) else v)
                   for k, v in record.get("config", {}).items()]}


def _methods(methods: list) -> tuple[list, list]:
    """One paragraph per distinct text (prefixed by its runs when there are several) and
    the references they cite."""
    paragraphs: dict[str, list[str]] = {}
    for label, text, _ in methods:
        paragraphs.setdefault(text, []).append(label)
    shown = [(", ".join(labels) if len(paragraphs) > 1 else "", text)
             for text, labels in paragraphs.items()]
    return shown, cited_references(*paragraphs)


def write_participant_report(
    out_dir,
    subject: str,
    *,
    runs_info: Sequence[RunInfo],
    timings: Mapping[str, Mapping[str, float]],
    warnings: Mapping[str, Sequence[str]],
    config_record: Mapping,
    stage_details: Mapping[str, Mapping[str, str]] | None = None,
    record_path=None,
) -> Path:
    """Write ``out_dir/sub-<subject>.html`` and its figures; return the page's path.

    Parameters
    ----------
    out_dir
        The derivatives folder (``OUTPUT_DIR``).
    subject
        Participant label, with or without ``sub-``.
    runs_info
        The participant's runs (:class:`RunInfo`), succeeded or not.
    timings
        ``{run label: {stage label: seconds}}`` (from the progress reporter).
    warnings
        ``{run label: [warning, ...]}`` raised while checking and processing the run.
    config_record
        The provenance record (the content of ``logs/qsmflow_*_config.toml``): sections
        ``qsmflow``, ``dependencies`` and ``config`` (``config.bids_dir`` locates the
        raw magnitude).
    stage_details
        ``{run label: {stage label: key number}}``, shown beside the timings.
    record_path
        The provenance TOML, linked from the page (default: the one the Chimap sidecars
        name).
    """
    out_dir = Path(out_dir)
    subject = subject.removeprefix("sub-")
    page = out_dir / f"sub-{subject}.html"
    config = config_record.get("config", {})
    stage_details = stage_details or {}
    runs_info = sorted(runs_info, key=lambda r: r.label)
    methods: list = []
    runs = [_run_context(out_dir, info, config=config, timings=timings.get(info.label, {}),
                         details=stage_details.get(info.label, {}),
                         warnings=warnings.get(info.label, []), methods=methods)
            for info in runs_info]
    if record_path is None:
        named = [m[2] for m in methods if m[2]]
        record_path = out_dir / named[0] if named else None
    software = config_record.get("qsmflow", {})
    paragraphs, references = _methods(methods)
    context = {
        "subject": subject,
        "runs": runs,
        "summary": [
            ("participant", f"sub-{subject}"),
            ("runs", ", ".join(f"{r.label} ({r.status})" for r in runs_info) or "none"),
            ("inversion", config.get("inversion", "")),
            ("qsmflow", software.get("version", __version__)),
            ("report written", datetime.now(timezone.utc).isoformat(timespec="seconds"))],
        "failed": [(r.label, (r.message or "no reason recorded").splitlines()[0])
                   for r in runs_info if r.status == "failed"],
        "methods": paragraphs,
        "references": references,
        "provenance": _provenance(config_record, out_dir, record_path),
    }
    atomic_write_text(page, render_page(context))
    return page
