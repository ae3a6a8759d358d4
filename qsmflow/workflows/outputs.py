"""Derivative outputs of one run, named from BIDS entities."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from qsmflow.bids.naming import derivative_path
from qsmflow.interfaces.derivatives import DerivativesSink

# (input field, entities added, suffix, extension, sidecar)
QSM_OUTPUTS = (
    ("chi_ppm", {}, "Chimap", ".nii.gz",
     {"Units": "ppm", "Description": "magnetic susceptibility (SI, volume), inside the mask"}),
    ("brain_mask", {"description": "brain"}, "mask", ".nii.gz", {"Type": "Brain"}),
    ("eroded_mask", {"description": "qsm"}, "mask", ".nii.gz",
     {"Description": "voxels where the local field and chi are valid (after V-SHARP)"}),
    ("total_field_hz", {"description": "total"}, "fieldmap", ".nii.gz",
     {"Units": "Hz", "Description": "unwrapped total field, phase offset removed; defined up "
      "to a field that is harmonic inside the mask"}),
    ("local_field_hz", {"description": "local"}, "fieldmap", ".nii.gz",
     {"Units": "Hz", "Description": "local field after V-SHARP background removal"}),
)
ROI_OUTPUTS = (
    ("roi_table", {"description": "deepgm"}, "chistats", ".csv", {}),
    ("dseg", {"space": "orig", "description": "deepgm"}, "dseg", ".nii.gz", {}),
    ("dseg_tsv", {"space": "orig", "description": "deepgm"}, "dseg", ".tsv", {}),
)


def init_ds_run_wf(*, out_dir: str, entities: dict, static_metadata: dict, with_roi: bool,
                   name: str = "ds_run_wf") -> pe.Workflow:
    """Write all derivatives of one run in a single all-or-nothing sink.

    Inputs
    ------
    chi_ppm, brain_mask, eroded_mask, total_field_hz, local_field_hz, inversion_metadata
    roi_table, dseg, dseg_tsv
        Only with ``with_roi``.
    """
    workflow = pe.Workflow(name=name)
    outputs = QSM_OUTPUTS + (ROI_OUTPUTS if with_roi else ())
    fields = [o[0] for o in outputs]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields + ["inversion_metadata"]),
                        name="inputnode")
    merge = pe.Node(niu.Merge(len(fields)), name="merge", run_without_submitting=True)
    out_paths, sidecars = [], []
    for field, extra, suffix, extension, sidecar in outputs:
        path = derivative_path(".", {**entities, **extra}, suffix, extension)
        out_paths.append(str(path))
        sidecars.append(dict(sidecar, **(static_metadata if suffix == "Chimap" else {})))
    sink = pe.Node(DerivativesSink(out_dir=out_dir, out_paths=out_paths, sidecars=sidecars),
                   name="ds_run", run_without_submitting=True)
    workflow.connect([(inputnode, merge, [(f, f"in{i + 1}") for i, f in enumerate(fields)]),
                      (merge, sink, [("out", "in_files")]),
                      (inputnode, sink, [("inversion_metadata", "chimap_metadata")])])
    return workflow
