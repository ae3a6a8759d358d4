"""Per-participant ROI tables of susceptibility in labelled regions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

CHI_REFERENCES = ("whole_brain", "csf", "none")
ROI_COLUMNS = ("participant_id", "session", "acq", "run", "roi", "hemisphere", "label_id",
               "n_voxels", "volume_mm3", "mean_ppm", "median_ppm", "std_ppm", "p25_ppm",
               "p75_ppm", "chi_reference", "chi_reference_ppm", "atlas", "roi_erosion_vox")


@dataclass(frozen=True)
class RegionLabel:
    label_id: int
    roi: str
    hemisphere: str


def reference_value_ppm(chi_ppm: np.ndarray, mask: np.ndarray, chi_reference: str,
                        csf_mask: np.ndarray | None = None) -> float:
    """The susceptibility subtracted before ROI statistics.

    ``whole_brain``: mean over the mask; ``csf``: median over ``csf_mask`` (the lateral
    ventricles, robust to the choroid plexus); ``none``: 0.
    """
    if chi_reference == "none":
        return 0.0
    if chi_reference == "whole_brain":
        return float(np.mean(chi_ppm[mask])) if mask.any() else 0.0
    if chi_reference == "csf":
        region = mask & np.asarray(csf_mask, bool) if csf_mask is not None else None
        if region is None or region.sum() < 10:
            raise ValueError("--chi-reference csf needs a ventricle mask with at least 10 "
                             "voxels inside the QSM mask; this run has none (use the default "
                             "atlas, or --chi-reference whole_brain)")
        return float(np.median(chi_ppm[region]))
    raise ValueError(f"unknown chi reference {chi_reference!r}; choose from {CHI_REFERENCES}")


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
    erode_vox: int = 0,
    csf_mask: np.ndarray | None = None,
) -> pd.DataFrame:
    """Statistics of chi (ppm) in every region, restricted to ``mask``.

    Regions with no voxel inside the mask appear with ``n_voxels = 0`` and NaN values,
    so that every table has the same rows.
    """
    mask = np.asarray(mask, bool)
    reference = reference_value_ppm(chi_ppm, mask, chi_reference, csf_mask)
    rows = []
    for region in regions:
        voxels = (labels == region.label_id) & mask
        if erode_vox > 0:
            voxels = ndimage.binary_erosion(voxels, iterations=erode_vox)
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
            "roi_erosion_vox": erode_vox,
        })
    return pd.DataFrame(rows, columns=list(ROI_COLUMNS))
