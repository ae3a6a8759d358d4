"""The figures of one run's report section, made from the run's derivatives.

Each figure is a slice mosaic (:func:`qsmflow.reports.figures.mosaic_figure`) written as
``<run>_desc-<kind>_mosaic.png`` in the run's ``figures/`` folder: the first-echo
magnitude with the brain mask, the total and local field maps, chi, and the deep gray
matter regions over chi. A figure whose inputs are missing or unreadable is skipped, and
the reason is returned so that the page can say why.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmflow.bids.naming import derivative_path

from .figures import mosaic_figure

LOGGER = logging.getLogger(__name__)

# Display windows. chi has a fixed window so that pages of different runs compare; the
# field maps are windowed symmetrically at this percentile of |field| inside the mask.
CHI_WINDOW_PPM = 0.15
FIELD_WINDOW_PERCENTILE = 99.0
MAGNITUDE_WINDOW_PERCENTILE = 99.5
ROI_MARGIN_MM = 16.0  # the ROI figure shows the deep gray matter and this much around it


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



def _label_names(tsv: Path) -> dict:
    try:
        table = pd.read_csv(tsv, sep="\t")
    except (OSError, ValueError):
        return {}
    name = "name" if "name" in table.columns else "roi"
    return {int(i): str(n) for i, n in zip(table["index"], table[name], strict=True)}


def make_run_figures(out_dir: Path, entities: dict, label: str, sidecar: dict,
                 bids_dir: str | None) -> tuple[dict, dict]:
    """Make the run's mosaics, ``<run>_desc-<kind>_mosaic.png`` in its figures folder;
    returns ``{kind: path}`` and ``{kind: why it is missing}``."""
    def path(suffix, ext=".nii.gz", **more):  # field maps are in fmap/ (BIDS Derivatives)
        return derivative_path(out_dir, {**entities, **more}, suffix, ext,
                               datatype="fmap" if suffix == "fieldmap" else "anat")

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

