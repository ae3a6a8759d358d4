"""Per-participant ROI tables of susceptibility in labelled regions.

Every table records the susceptibility of each reference region in the unreferenced map
(whole brain, lateral-ventricle CSF, white matter; NaN where the run has no such mask),
so that a study can re-reference afterwards, and the QC values the group level checks
(mask volume, registration similarity).

References
----------
Straub S, Schneider TM, Emmerich J, et al. Suitable reference tissue for quantitative
susceptibility mapping of the brain. Magn Reson Med 2017;78:204-214.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

CHI_REFERENCES = ("whole_brain", "csf", "white_matter", "none")
REFERENCE_COLUMNS = {"whole_brain": "ref_whole_brain_ppm", "csf": "ref_csf_ppm",
                     "white_matter": "ref_wm_ppm"}
ROI_COLUMNS = ("participant_id", "session", "acq", "run", "roi", "hemisphere", "label_id",
               "n_voxels", "volume_mm3", "mean_ppm", "median_ppm", "std_ppm", "p25_ppm",
               "p75_ppm", "chi_reference", "chi_reference_ppm", "atlas", "roi_erosion_mm",
               *REFERENCE_COLUMNS.values(), "mask_volume_mm3", "registration_similarity")
# A reference region with fewer voxels inside the QSM mask gives no stable median.
MIN_REFERENCE_VOXELS = 10
# Default erosion (mm) of every region before its statistics. A registered atlas label is
# off by a voxel or so at its edge, where it takes in the neighbouring tissue: on the
# tuning heads of qsmflow.simulation.wholehead (BrainWeb 04 straight, 05 oblique; 1 mm;
# never a test head) the registered labels overlap the true nuclei with Dice 0.70-0.89,
# and the ROI means regressed on the true nucleus means have a slope of 0.77 / 0.84
# uneroded, 0.90 / 0.95 eroded by 1 mm (2 mm: 0.93 / 0.97, but R^2 0.83 on 05), while chi
# on the true labels gives 0.91 / 0.93. A 1 mm ball erodes nothing on a grid of 2 mm
# voxels (benchmarks/bench_roi_erosion.py, docs/benchmarks.md).
ROI_ERODE_MM = 1.0
ERODE_TOLERANCE_MM = 1e-4


@dataclass(frozen=True)
class RegionLabel:
    label_id: int
    roi: str
    hemisphere: str


def reference_values_ppm(chi_ppm: np.ndarray, mask: np.ndarray, *,
                         csf_mask: np.ndarray | None = None,
                         wm_mask: np.ndarray | None = None) -> dict[str, float]:
    """Susceptibility of each reference region, NaN where its mask is absent or small.

    ``whole_brain``: mean over the mask; ``csf``: median over ``csf_mask`` (the lateral
    ventricles; the median is robust to the choroid plexus); ``white_matter``: median
    over ``wm_mask``. Regions are restricted to ``mask``.
    """
    values = {"whole_brain": float(np.mean(chi_ppm[mask])) if mask.any() else np.nan}
    for name, region in (("csf", csf_mask), ("white_matter", wm_mask)):
        inside = mask & np.asarray(region, bool) if region is not None else None
        values[name] = (float(np.median(chi_ppm[inside])) if inside is not None
                        and inside.sum() >= MIN_REFERENCE_VOXELS else np.nan)
    return values


def reference_value_ppm(chi_ppm: np.ndarray, mask: np.ndarray, chi_reference: str,
                        csf_mask: np.ndarray | None = None,
                        wm_mask: np.ndarray | None = None) -> float:
    """The susceptibility subtracted before ROI statistics (see
    :func:`reference_values_ppm`); ``none``: 0; whole brain of an empty mask: 0."""
    if chi_reference not in CHI_REFERENCES:
        raise ValueError(f"unknown chi reference {chi_reference!r}; choose from "
                         f"{CHI_REFERENCES}")
    if chi_reference == "none":
        return 0.0
    value = reference_values_ppm(chi_ppm, mask, csf_mask=csf_mask, wm_mask=wm_mask)[
        chi_reference]
    if chi_reference == "whole_brain":
        return 0.0 if np.isnan(value) else value
    if np.isnan(value):
        what = "ventricle" if chi_reference == "csf" else "white-matter"
        raise ValueError(f"--chi-reference {chi_reference} needs a {what} mask with at least "
                         f"{MIN_REFERENCE_VOXELS} voxels inside the QSM mask; this run has "
                         "none (use the default atlas, or --chi-reference whole_brain)")
    return value


def eroded_region(region: np.ndarray, erode_mm: float, voxel_size_mm) -> np.ndarray:
    """The voxels of ``region`` farther than ``erode_mm`` from every voxel outside it.

    The same as a binary erosion by a ball of radius ``erode_mm`` (in mm, so that one
    setting means the same on 0.5, 1 and 2 mm grids: 1 mm removes the outer layer of a
    1 mm grid and nothing of a 2 mm one). An empty result stays empty: the region then
    has no statistics (``n_voxels`` 0).
    """
    region = np.asarray(region, bool)
    if erode_mm <= 0 or not region.any():
        return region
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(region))
    inner = region[box]
    # Distance (mm) to the nearest voxel outside the region; the box's margin is outside.
    padded = np.pad(inner, 1)
    depth = ndimage.distance_transform_edt(padded, sampling=voxel_size_mm)[1:-1, 1:-1, 1:-1]
    out = np.zeros_like(region)
    # A voxel exactly at the radius goes, as in a ball erosion; the tolerance absorbs an
    # affine's rounding (voxel sizes of 0.99999998 mm).
    out[box] = inner & (depth > erode_mm + ERODE_TOLERANCE_MM)
    return out


def roi_table(
    chi_ppm: np.ndarray,
    labels: np.ndarray,
    regions: list[RegionLabel],
    mask: np.ndarray,
    voxel_volume_mm3: float,
    *,
    entities: dict,
    chi_reference: str = "whole_brain",
    atlas: str = "",
    erode_mm: float = 0.0,
    voxel_size_mm=(1.0, 1.0, 1.0),
    csf_mask: np.ndarray | None = None,
    wm_mask: np.ndarray | None = None,
    registration_similarity: float = np.nan,
) -> pd.DataFrame:
    """Statistics of chi (ppm) in every region, restricted to ``mask``.

    Regions with no voxel inside the mask appear with ``n_voxels = 0`` and NaN values,
    so that every table has the same rows. Every row also carries the reference values
    (``ref_*_ppm``, unreferenced), the mask volume and the registration similarity.
    """
    mask = np.asarray(mask, bool)
    reference = reference_value_ppm(chi_ppm, mask, chi_reference, csf_mask, wm_mask)
    references = reference_values_ppm(chi_ppm, mask, csf_mask=csf_mask, wm_mask=wm_mask)
    scan = {**{REFERENCE_COLUMNS[k]: v for k, v in references.items()},
            "mask_volume_mm3": float(mask.sum() * voxel_volume_mm3),
            "registration_similarity": float(registration_similarity)}
    rows = []
    for region in regions:
        voxels = (labels == region.label_id) & mask
        if erode_mm > 0:
            voxels = eroded_region(voxels, erode_mm, voxel_size_mm)
        values = chi_ppm[voxels] - reference
        has = values.size > 0
        rows.append({
            "participant_id": f"sub-{entities['subject']}",
            "session": entities.get("session") or "", "acq": entities.get("acquisition") or "",
            "run": entities.get("run") or "", "roi": region.roi,
            "hemisphere": region.hemisphere, "label_id": region.label_id,
            "n_voxels": int(values.size), "volume_mm3": float(values.size * voxel_volume_mm3),
            "mean_ppm": float(values.mean()) if has else np.nan,
            "median_ppm": float(np.median(values)) if has else np.nan,
            "std_ppm": float(values.std(ddof=1)) if values.size > 1 else np.nan,
            "p25_ppm": float(np.percentile(values, 25)) if has else np.nan,
            "p75_ppm": float(np.percentile(values, 75)) if has else np.nan,
            "chi_reference": chi_reference, "chi_reference_ppm": reference, "atlas": atlas,
            "roi_erosion_mm": float(erode_mm), **scan,
        })
    return pd.DataFrame(rows, columns=list(ROI_COLUMNS))
