"""The per-participant HTML report: ``OUTPUT_DIR/sub-<label>.html``.

One page per participant shows, for every run, what the pipeline did and whether it
worked: slice mosaics of the first-echo magnitude with the brain mask, the total and
local field maps and the susceptibility map; the deep gray matter regions over chi and
their table; the run's parameters, the time and key number of each stage and the
warnings; then a methods paragraph with references, and the provenance record. A run
that failed gets a section saying in which stage and why.

The figures are PNG files beside the page, under ``sub-<label>[/ses-<label>]/figures/``
(next to the atlas registration figure), referenced by relative links: the page reads
offline, and the folder ``OUTPUT_DIR`` can be moved or copied as a whole.
"""

from __future__ import annotations

import html
import json
import logging
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
from qsmflow.algorithms.bgremove import default_vsharp_radii_mm
from qsmflow.bids.naming import derivative_path
from qsmflow.files import atomic_write_text

from .figures import mosaic_figure
from .methods import (
    BGREMOVE_DESCRIPTIONS,
    METHOD_DESCRIPTIONS,
    cited_references,
    nsidl_weights_methods,
    qsm_methods,
    roi_methods,
)

LOGGER = logging.getLogger(__name__)

# Display windows. chi has a fixed window so that pages of different runs compare; the
# field maps are windowed symmetrically at this percentile of |field| inside the mask.
CHI_WINDOW_PPM = 0.15
FIELD_WINDOW_PERCENTILE = 99.0
MAGNITUDE_WINDOW_PERCENTILE = 99.5
ROI_MARGIN_MM = 16.0  # the ROI figure shows the deep gray matter and this much around it

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
    """``sub-01_ses-pre_run-2`` -> ``{'subject': '01', 'session': 'pre', ...}``."""
    entities = dict.fromkeys(_LABEL_KEYS.values())
    for part in label.split("_"):
        key, _, value = part.partition("-")
        if key not in _LABEL_KEYS or not value:
            raise ValueError(f"{label!r} is not a run label such as sub-01_ses-pre_run-1")
        entities[_LABEL_KEYS[key]] = value
    if entities["subject"] is None:
        raise ValueError(f"{label!r} has no sub- entity")
    return entities


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _relative_url(path: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(path, base)).as_posix())


def _load_ras(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Data and voxel size of a NIfTI, axes reordered/flipped to RAS (no resampling)."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(img.get_fdata(dtype=np.float32))
    if data.ndim == 4:
        data = data[..., 0]
    return data, tuple(float(z) for z in img.header.get_zooms()[:3])


def _symmetric_limit(values: np.ndarray, percentile: float) -> float:
    """A round symmetric display limit at ``percentile`` of ``|values|`` (two digits)."""
    values = np.abs(values[np.isfinite(values)])
    limit = float(np.percentile(values, percentile)) if values.size else 0.0
    if limit <= 0:
        return 1.0
    scale = 10.0 ** (math.floor(math.log10(limit)) - 1)
    return math.ceil(limit / scale) * scale


def _first_echo_magnitude(sidecar: dict, bids_dir: str | None) -> Path | None:
    """The first-echo magnitude among the Chimap's ``Sources`` (``bids:raw:<path>``)."""
    sources = [s.removeprefix("bids:raw:") for s in sidecar.get("Sources", [])
               if s.startswith("bids:raw:")]
    if not sources or not bids_dir:
        return None
    magnitudes = [s for s in sources if "_part-mag" in s] or sources
    return Path(bids_dir) / magnitudes[0]


# ---------------------------------------------------------------------------------------
# One run


class _Section:
    """Collects the HTML of one run."""

    def __init__(self):
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def html(self) -> str:
        return "\n".join(self.parts)


def _figure_html(path: Path | None, base: Path, caption: str, problem: str = "",
                 cls: str = "") -> str:
    if path is None or not path.is_file():
        return (f'<p class="missing">{_e(caption)}: not available'
                f"{': ' + _e(problem) if problem else ''}.</p>")
    return (f'<figure class="{cls}"><img src="{_relative_url(path, base)}" '
            f'alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table_html(header: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _key_value_html(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _timings_html(timings: Mapping[str, float], details: Mapping[str, str]) -> str:
    if not timings:
        return "<p>No stage timing was recorded (for example, the run was submitted to a " \
               "cluster, or the report was made outside a pipeline run).</p>"
    rows = [(stage, f"{seconds:.1f}", details.get(stage, ""))
            for stage, seconds in timings.items()]
    rows.append(("total (sum of stages)", f"{sum(timings.values()):.1f}", ""))
    return _table_html(("stage", "time (s)", "key number"), rows, "timings")


def _warnings_html(items: Sequence[str]) -> str:
    if not items:
        return "<p>No warnings.</p>"
    return '<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in items) + "</ul>"


def _vsharp_radii_text(config: Mapping, details: Mapping[str, str],
                       voxel_size_mm) -> str:
    if details.get("V-SHARP"):
        return details["V-SHARP"].removeprefix("radii ") + " (as run)"
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
        rows.append(("brain mask", "first-echo magnitude, "
                     + (f"threshold {threshold:g} of the robust maximum" if threshold
                        else "Otsu threshold")
                     + f", erosion {config.get('mask_erode_mm', 1.0):g} mm"
                     + (f"; {details['brain mask']}" if details.get("brain mask") else "")))
    refine = config.get("bgremove_refine", True)
    rows.append(("background removal", BGREMOVE_DESCRIPTIONS[config.get("bgremove", "lbv")]
                 + (" with dipole-model refinement" if refine else " (no refinement)")))
    if config.get("bgremove", "lbv") == "lbv":
        rows.append(("LBV peel", f"{config.get('lbv_peel_mm', 0.0):g} mm"))
    else:
        rows.append(("V-SHARP radii", _vsharp_radii_text(config, details, voxel_size)))
        rows.append(("V-SHARP TSVD threshold", f"{config.get('vsharp_threshold', 0.05):g}"))
    if roi_table is not None and len(roi_table):
        first = roi_table.iloc[0]
        rows.append(("ROI atlas", first.get("atlas", "")))
        rows.append(("chi reference", f"{first.get('chi_reference', '')} "
                     f"({first.get('chi_reference_ppm', float('nan')):.4f} ppm subtracted)"))
        rows.append(("ROI erosion", f"{int(first.get('roi_erosion_vox', 0))} voxel(s)"))
    return rows


def _roi_table_html(table: pd.DataFrame) -> str:
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
    return _table_html(columns, rows, "roi")


def _label_names(tsv: Path) -> dict:
    try:
        table = pd.read_csv(tsv, sep="\t")
    except (OSError, ValueError):
        return {}
    name = "name" if "name" in table.columns else "roi"
    return {int(i): str(n) for i, n in zip(table["index"], table[name], strict=True)}


def _run_figures(out_dir: Path, entities: dict, label: str, sidecar: dict,
                 bids_dir: str | None) -> tuple[dict, dict]:
    """Make the run's mosaics, ``<run>_desc-<kind>_mosaic.png`` in its figures folder;
    returns ``{kind: path}`` and ``{kind: why it is missing}``."""
    def path(suffix, ext=".nii.gz", **more):
        return derivative_path(out_dir, {**entities, **more}, suffix, ext)

    made, problems = {}, {}

    def attempt(kind, make):
        target = derivative_path(out_dir, {**entities, "description": kind}, "mosaic",
                                 ".png", datatype="figures")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            made[kind] = Path(make(str(target)))
        except Exception as err:  # a missing or unreadable file costs one figure only
            LOGGER.warning("%s: report figure %s not made: %s", label, kind, err)
            problems[kind] = str(err)

    brain = qsm = None
    try:
        brain = _load_ras(path("mask", description="brain"))[0] > 0.5
        qsm = _load_ras(path("mask", description="qsm"))[0] > 0.5
    except Exception as err:
        problems["masks"] = str(err)

    def magnitude(target):
        source = _first_echo_magnitude(sidecar, bids_dir)
        if source is None:
            raise FileNotFoundError("the Chimap sidecar lists no raw magnitude in Sources, "
                                    "or the provenance record lacks config.bids_dir")
        data, voxel = _load_ras(source)
        positive = data[data > 0]
        vmax = float(np.percentile(positive, MAGNITUDE_WINDOW_PERCENTILE)) \
            if positive.size else 1.0
        return mosaic_figure(data, target, voxel, vmin=0.0, vmax=vmax,
                             region=np.ones(data.shape, bool), outline=brain,
                             slices_within=brain,
                             title=f"{label}: first-echo magnitude ({source.name}), "
                                   "brain mask outlined in red")

    def field(kind, description, inside, what):
        def make(target):
            data, voxel = _load_ras(path("fieldmap", description=description))
            region = inside if inside is not None else data != 0
            limit = _symmetric_limit(data[region], FIELD_WINDOW_PERCENTILE)
            return mosaic_figure(data, target, voxel, vmin=-limit, vmax=limit,
                                 cmap="RdBu_r", region=region,
                                 colorbar_label=f"{what} (Hz), window +-{limit:g}",
                                 title=f"{label}: {what} (Hz)")
        attempt(kind, make)

    def chi(target):
        data, voxel = _load_ras(path("Chimap"))
        return mosaic_figure(data, target, voxel, vmin=-CHI_WINDOW_PPM, vmax=CHI_WINDOW_PPM,
                             region=qsm if qsm is not None else data != 0,
                             colorbar_label=f"chi (ppm), window +-{CHI_WINDOW_PPM:g}",
                             title=f"{label}: magnetic susceptibility chi (ppm)")

    def rois(target):
        data, voxel = _load_ras(path("Chimap"))
        dseg_path = path("dseg", space="orig", description="deepgm")
        labels = np.rint(_load_ras(dseg_path)[0]).astype(int)
        names = _label_names(path("dseg", ".tsv", space="orig", description="deepgm"))
        return mosaic_figure(data, target, voxel, vmin=-CHI_WINDOW_PPM,
                             vmax=CHI_WINDOW_PPM,
                             region=qsm if qsm is not None else data != 0, labels=labels,
                             label_names=names, slices_within=labels > 0,
                             margin_mm=ROI_MARGIN_MM,
                             colorbar_label=f"chi (ppm), window +-{CHI_WINDOW_PPM:g}",
                             title=f"{label}: deep gray matter regions over chi")

    attempt("magnitude", magnitude)
    field("totalfield", "total", brain, "total field")
    field("localfield", "local", qsm, "local field")
    attempt("chi", chi)
    if path("dseg", space="orig", description="deepgm").is_file():
        attempt("deepgm", rois)
    return made, problems


def _run_section(out_dir: Path, info: RunInfo, *, config: Mapping, timings: Mapping,
                 details: Mapping, warnings: Sequence[str], methods: list) -> str:
    entities = entities_from_label(info.label)
    anchor = f"run-{info.label}"
    section = _Section()
    badge = {"succeeded": "ok", "failed": "fail"}.get(info.status, "other")
    section.add(f'<section class="run" id="{_e(anchor)}"><h2>{_e(info.label)} '
                f'<span class="badge {badge}">{_e(info.status)}</span></h2>')
    if info.status != "succeeded":
        what = ("failed" if info.status == "failed" else info.status)
        section.add(f'<div class="failure" id="{_e(anchor)}-failure"><h3>{_e(what)}: why</h3>'
                    f"<pre>{_e(info.message or 'no reason was recorded')}</pre></div>")
        section.add(f"<h3>Stage timings</h3>{_timings_html(timings, details)}")
        section.add(f"<h3>Warnings</h3>{_warnings_html(warnings)}")
        section.add("</section>")
        return section.html()

    chi_path = derivative_path(out_dir, entities, "Chimap", ".nii.gz")
    sidecar_path = chi_path.with_name(chi_path.name.replace(".nii.gz", ".json"))
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    chi_img = nib.load(str(chi_path)) if chi_path.is_file() else None
    table_path = derivative_path(out_dir, {**entities, "description": "deepgm"}, "chistats",
                                 ".csv")
    roi_table = pd.read_csv(table_path) if table_path.is_file() else None
    made, problems = _run_figures(out_dir, entities, info.label, sidecar,
                                  config.get("bids_dir"))

    section.add(f'<div id="{_e(anchor)}-images"><h3>Images</h3>')
    for kind, caption in (
            ("magnitude", "First-echo magnitude with the brain mask outline"),
            ("totalfield", "Total field (Hz): unwrapped, phase offset removed"),
            ("localfield", "Local field (Hz) after V-SHARP background removal"),
            ("chi", f"Susceptibility chi (ppm), fixed window +-{CHI_WINDOW_PPM:g} ppm")):
        section.add(_figure_html(made.get(kind), out_dir, caption,
                                 problems.get(kind, problems.get("masks", ""))))
    section.add("</div>")

    section.add(f'<div id="{_e(anchor)}-rois"><h3>Deep gray matter</h3>')
    if roi_table is None:
        section.add("<p>No ROI table for this run.</p>")
    else:
        section.add(_figure_html(made.get("deepgm"), out_dir,
                                 "Deep gray matter regions over chi (ppm)",
                                 problems.get("deepgm", "")))
        registration = derivative_path(out_dir, {**entities, "description": "atlasreg"},
                                       "qc", ".png", datatype="figures")
        if registration.is_file():
            section.add(_figure_html(registration, out_dir, "Atlas registration: template "
                                     "outline (red) and labels over the magnitude", cls="narrow"))
        section.add(f"<p>chi per region (ppm), relative to the reference given in the "
                    f"parameters. File: <code>{_e(table_path.relative_to(out_dir))}</code>"
                    f"</p>{_roi_table_html(roi_table)}")
    section.add("</div>")

    section.add(f'<div id="{_e(anchor)}-parameters"><h3>Run parameters</h3>'
                + _key_value_html(_parameters(sidecar, config, details, chi_img, roi_table))
                + "</div>")
    section.add(f'<div id="{_e(anchor)}-timings"><h3>Stage timings</h3>'
                f"{_timings_html(timings, details)}</div>")
    section.add(f'<div id="{_e(anchor)}-warnings"><h3>Warnings</h3>'
                f"{_warnings_html(warnings)}</div>")
    section.add("</section>")

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
                                roi_erode_vox=int(first.get("roi_erosion_vox", 0)))
        methods.append((info.label, text.strip(), sidecar.get("QsmflowProvenance")))
    return section.html()


# ---------------------------------------------------------------------------------------
# The page


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 0 auto;
       padding: 1em 2em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #333; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
nav a { margin-right: 1em; }
figure { margin: 1em 0; } figure img { width: 100%; height: auto; display: block; }
figure.narrow { max-width: 600px; }
figcaption { font-size: 0.9em; color: #555; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
table.roi td, table.timings td { text-align: right; }
table.roi td:first-child, table.roi td:nth-child(2), table.timings td:first-child,
table.timings td:last-child { text-align: left; }
table.kv th { background: #f3f3f3; font-weight: normal; width: 16em; }
.badge { font-size: 0.6em; padding: 2px 8px; border-radius: 8px; vertical-align: middle; }
.badge.ok { background: #cfc; } .badge.fail { background: #fcc; }
.badge.other { background: #ffd; }
.failure { background: #fee; border: 1px solid #c66; padding: 0.5em 1em; }
.failure pre { white-space: pre-wrap; }
.missing { color: #a00; } ul.warnings li { color: #850; }
code, pre { font-size: 0.9em; } .methods p { text-align: justify; }
"""


def _provenance_html(record: Mapping, out_dir: Path, record_path: Path | None) -> str:
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
    parts = [_key_value_html(rows)]
    if record_path is not None:
        parts.append(f'<p>Full record (resolved configuration, versions): <a href="'
                     f'{_relative_url(record_path, out_dir)}">'
                     f"{_e(os.path.relpath(record_path, out_dir))}</a></p>")
    dependencies = record.get("dependencies", {})
    if dependencies:
        parts.append("<h3>Dependencies</h3>" + _table_html(
            ("package", "version"), sorted(dependencies.items()), "deps"))
    config = record.get("config", {})
    if config:
        parts.append("<h3>Resolved configuration</h3>" + _key_value_html(
            [(k, json.dumps(v) if isinstance(v, (list, dict)) else v)
             for k, v in config.items()]))
    return "\n".join(parts)


def _methods_html(methods: list) -> str:
    if not methods:
        return "<p>No run of this participant completed, so there is nothing to describe.</p>"
    paragraphs: dict[str, list[str]] = {}
    for label, text, _ in methods:
        paragraphs.setdefault(text, []).append(label)
    parts = []
    for text, labels in paragraphs.items():
        prefix = (f"<b>{_e(', '.join(labels))}.</b> " if len(paragraphs) > 1 else "")
        parts.append(f"<p>{prefix}{_e(text)}</p>")
    references = cited_references(*paragraphs)
    parts.append("<h3>References</h3><ol class=\"references\">" + "".join(
        f"<li>[{_e(key)}] {_e(text)}</li>" for key, text in references) + "</ol>")
    return "\n".join(parts)


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
    sections = [_run_section(out_dir, info, config=config,
                             timings=timings.get(info.label, {}),
                             details=stage_details.get(info.label, {}),
                             warnings=list(warnings.get(info.label, [])), methods=methods)
                for info in runs_info]
    if record_path is None:
        named = [m[2] for m in methods if m[2]]
        record_path = out_dir / named[0] if named else None
    failed = [r for r in runs_info if r.status == "failed"]
    software = config_record.get("qsmflow", {})
    summary_rows = [
        ("participant", f"sub-{subject}"),
        ("runs", ", ".join(f"{r.label} ({r.status})" for r in runs_info) or "none"),
        ("inversion", config.get("inversion", "")),
        ("qsmflow", software.get("version", __version__)),
        ("report written", datetime.now(timezone.utc).isoformat(timespec="seconds")),
    ]
    nav = " ".join(f'<a href="#run-{_e(r.label)}">{_e(r.label)}</a>' for r in runs_info)
    failed_html = ""
    if failed:
        failed_html = ('<section id="failed-runs" class="failure"><h2>Failed runs</h2><ul>'
                       + "".join(f'<li><a href="#run-{_e(r.label)}">{_e(r.label)}</a>: '
                                 f"{_e((r.message or 'no reason recorded').splitlines()[0])}"
                                 "</li>" for r in failed) + "</ul></section>")
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>qsmflow report: sub-{_e(subject)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>qsmflow: sub-{_e(subject)}</h1>
<nav>{nav} <a href="#methods">methods</a> <a href="#provenance">provenance</a></nav>
<section id="summary"><h2>Summary</h2>{_key_value_html(summary_rows)}</section>
{failed_html}
{chr(10).join(sections)}
<section id="methods" class="methods"><h2>Methods</h2>
{_methods_html(methods)}
</section>
<section id="provenance"><h2>Provenance</h2>
{_provenance_html(config_record, out_dir, record_path)}
</section>
</body>
</html>
"""
    atomic_write_text(page, document)
    return page
