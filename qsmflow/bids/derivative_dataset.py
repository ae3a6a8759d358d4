"""The files that make OUTPUT_DIR a BIDS Derivatives dataset: ``dataset_description.json``,
``README.md`` and ``.bidsignore``.

References
----------
BIDS specification, "Derivatives" (dataset_description.json of derivative datasets, BIDS
URIs and ``DatasetLinks``) and "Modality agnostic files" (README, .bidsignore).
The ``.bidsignore`` follows the nipreps BIDS-Apps (fMRIPrep, sMRIPrep: ``*.html``,
``logs/``, ``figures/``, ``*_xfm.*``). docs/bids_validation.md says why each entry is there.
"""

from __future__ import annotations

import json
from pathlib import Path

from qsmflow import __version__
from qsmflow.files import atomic_write_text

from .errors import QSMUsageError

BIDS_VERSION = "1.10.0"
CODE_URL = "https://github.com/qsmflow/qsmflow"
# Files that BIDS does not specify. The report, its figures and the logs are what every
# BIDS-App writes; transforms (BEP 014) and tables of ROI statistics have no BIDS name yet.
BIDSIGNORE = (
    "*.html",  # the participant reports
    "figures",  # the reports' figures, sub-*/figures/ (bids-validator-deno 3 still reports
    # the folder itself for fMRIPrep's "figures/": without the slash it is ignored)
    "logs/",  # resolved configuration, run summaries, crash reports
    "*_xfm.*",  # atlas registration transforms (ANTs), as fMRIPrep lists them
    "*_chistats.csv",  # ROI statistics tables
    "group",  # group-level tables and figures
)
README = f"""\
# qsmflow derivatives

Quantitative susceptibility maps computed by qsmflow ({CODE_URL}) from the BIDS dataset
named in `dataset_description.json` (`DatasetLinks.raw`). Every image is on the grid of
the scan it was computed from (its sidecar's `SpatialReference`), except the `space-`
images, which are on a template's grid (their `SpatialReference` names it), and every
sidecar lists the raw files it was made from (`Sources`, BIDS URIs).

| file | content | units |
| --- | --- | --- |
| `sub-*/anat/*_Chimap.nii.gz` | magnetic susceptibility (reference: see the sidecar) | ppm |
| `sub-*/anat/*_desc-brain_mask.nii.gz` | brain mask | - |
| `sub-*/anat/*_desc-qsm_mask.nii.gz` | voxels where the local field and chi are valid | - |
| `sub-*/fmap/*_desc-total_fieldmap.nii.gz` | unwrapped total field, phase offset removed | Hz |
| `sub-*/fmap/*_desc-local_fieldmap.nii.gz` | local field after background removal | Hz |
| `sub-*/fmap/*_magnitude.nii.gz` | first-echo magnitude, the field maps' reference | - |
| `sub-*/anat/*_space-orig_desc-deepgm_dseg.nii.gz`, `.tsv` | ROI labels and their table | - |
| `sub-*/anat/*_desc-deepgm_chistats.csv` | ROI statistics of chi | ppm |
| `sub-*/anat/*_xfm.*` | atlas registration (ANTs), template to native and back | - |
| `sub-*/anat/*_space-<template>_res-<N>_Chimap.nii.gz` | chi in a template space | ppm |
| `sub-*/anat/*_space-<template>_res-<N>_desc-qsm_mask.nii.gz` | its mask | - |
| `sub-*.html`, `sub-*/figures/` | participant reports and their figures | - |
| `logs/` | configuration, software versions and summary of every run | - |
| `group/` | group-level tables, and voxel-wise template-space maps per group | ppm |

`.bidsignore` lists the files that BIDS does not specify (reports, figures, logs,
transforms, ROI tables). The `Authors` of `dataset_description.json` are copied from the
raw dataset, whose data these are; list the people who made these derivatives before you
share them.
"""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def derivative_description(bids_dir: Path | None) -> dict:
    """``dataset_description.json`` of qsmflow's derivatives of ``bids_dir``.

    ``Authors`` and ``License`` are the raw dataset's, as fMRIPrep copies its licence:
    the derivatives are made of those authors' data. ``DatasetLinks.raw`` resolves the
    ``bids:raw:`` URIs of the sidecars' ``Sources``.
    """
    description = {
        "Name": "qsmflow derivatives", "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "qsmflow", "Version": __version__, "CodeURL": CODE_URL}],
    }
    if bids_dir is None:
        return description
    raw = _read_json(Path(bids_dir) / "dataset_description.json")
    if isinstance(raw, dict):
        for key in ("Authors", "License"):
            if raw.get(key):
                description[key] = raw[key]
    description["DatasetLinks"] = {"raw": Path(bids_dir).resolve().as_uri()}
    return description


def write_dataset_description(output_dir: Path, bids_dir: Path | None = None) -> None:
    """Make OUTPUT_DIR a derivative dataset: write its ``dataset_description.json`` once
    (safe with parallel writers), and its ``README.md`` and ``.bidsignore`` where they are
    missing (a user's edits are kept; missing ``.bidsignore`` entries are added)."""
    output_dir = Path(output_dir)
    path = output_dir / "dataset_description.json"
    existing = _read_json(path) if path.exists() else None
    if isinstance(existing, dict) and existing.get("DatasetType") != "derivative":
        raise QSMUsageError(  # DatasetType "raw", or absent (raw by default)
            f"OUTPUT_DIR {output_dir} holds a BIDS dataset that is not a derivative "
            f"dataset ({path}). qsmflow writes only into derivatives folders; choose "
            "another OUTPUT_DIR (the arguments are BIDS_DIR OUTPUT_DIR).")
    if not isinstance(existing, dict):  # absent, or truncated: write it (again)
        atomic_write_text(path, json.dumps(derivative_description(bids_dir), indent=2) + "\n")
    readme = output_dir / "README.md"
    if not any((output_dir / name).exists() for name in
               ("README", "README.md", "README.rst", "README.txt")):
        atomic_write_text(readme, README)
    ignore = output_dir / ".bidsignore"
    present = ignore.read_text().splitlines() if ignore.exists() else []
    missing = [line for line in BIDSIGNORE if line not in present]
    if missing:
        atomic_write_text(ignore, "\n".join(present + missing) + "\n")
