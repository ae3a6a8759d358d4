"""Interface for the ROI table."""

from __future__ import annotations

import csv

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmflow.algorithms.dipole import voxel_size_from_affine
from qsmflow.analysis.roi import CHI_REFERENCES, RegionLabel, roi_table

from .images import load_data, load_mask, output_path


def read_region_labels(tsv_path) -> list[RegionLabel]:
    """Regions from a TSV with columns ``index``, ``roi`` and ``hemisphere`` (or ``name``)."""
    with open(tsv_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    regions = []
    for row in rows:
        roi = row.get("roi") or row.get("name")
        regions.append(RegionLabel(int(row["index"]), roi, row.get("hemisphere", "")))
    return regions


class _ROIStatsInputSpec(BaseInterfaceInputSpec):
    chi_ppm = File(exists=True, mandatory=True)
    labels = File(exists=True, mandatory=True, desc="label image in the chi grid")
    labels_tsv = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    entities = traits.Dict(mandatory=True)
    chi_reference = traits.Enum(*CHI_REFERENCES, usedefault=True)
    atlas = traits.Str("", usedefault=True)
    erode_mm = traits.Float(0.0, usedefault=True, desc="erosion of each region in mm")
    csf_mask = File(exists=True, desc="lateral-ventricle mask (CSF reference)")
    wm_mask = File(exists=True, desc="white-matter reference mask")
    registration_similarity = traits.Float(desc="of the atlas registration, for the QC")


class _ROIStatsOutputSpec(TraitedSpec):
    table = File(exists=True)


class ROIStats(SimpleInterface):
    input_spec = _ROIStatsInputSpec
    output_spec = _ROIStatsOutputSpec

    def _run_interface(self, runtime):
        chi, affine = load_data(self.inputs.chi_ppm)
        labels = np.rint(load_data(self.inputs.labels)[0]).astype(int)
        mask = load_mask(self.inputs.mask)
        csf, wm = (load_mask(path) if isdefined(path) else None
                   for path in (self.inputs.csf_mask, self.inputs.wm_mask))
        similarity = self.inputs.registration_similarity
        voxel_size = voxel_size_from_affine(affine)
        table = roi_table(chi, labels, read_region_labels(self.inputs.labels_tsv), mask,
                          float(np.prod(voxel_size)), voxel_size_mm=voxel_size,
                          entities=self.inputs.entities, chi_reference=self.inputs.chi_reference,
                          atlas=self.inputs.atlas, erode_mm=self.inputs.erode_mm,
                          csf_mask=csf, wm_mask=wm, registration_similarity=similarity
                          if isdefined(similarity) else np.nan)
        path = output_path("roi_table.csv")
        table.to_csv(path, index=False, float_format="%.6g")
        self._results["table"] = path
        return runtime
