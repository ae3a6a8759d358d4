"""Derivative outputs of one run, named from BIDS entities."""

from __future__ import annotations

from dataclasses import dataclass, field

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from qsmflow.bids.naming import derivative_path
from qsmflow.interfaces.derivatives import DerivativesSink


@dataclass(frozen=True)
class Output:
    """One derivative file: the sink input it comes from and how it is named."""

    field: str
    suffix: str
    extension: str
    entities: dict = field(default_factory=dict)
    sidecar: dict = field(default_factory=dict)
    datatype: str = "anat"


QSM_OUTPUTS = (
    Output("chi_ppm", "Chimap", ".nii.gz", sidecar={
        "Units": "ppm", "Description": "magnetic susceptibility (SI, volume), inside the mask"}),
    Output("brain_mask", "mask", ".nii.gz", {"description": "brain"}, {"Type": "Brain"}),
    Output("eroded_mask", "mask", ".nii.gz", {"description": "qsm"}, {
        "Description": "voxels where the local field and chi are valid (after V-SHARP)"}),
    Output("total_field_hz", "fieldmap", ".nii.gz", {"description": "total"}, {
        "Units": "Hz", "Description": "unwrapped total field, phase offset removed; defined "
        "up to a field that is harmonic inside the mask"}),
    Output("local_field_hz", "fieldmap", ".nii.gz", {"description": "local"}, {
        "Units": "Hz", "Description": "local field after V-SHARP background removal"}),
)
ROI_OUTPUTS = (
    Output("roi_table", "chistats", ".csv", {"description": "deepgm"}),
    Output("dseg", "dseg", ".nii.gz", {"space": "orig", "description": "deepgm"}),
    Output("dseg_tsv", "dseg", ".tsv", {"space": "orig", "description": "deepgm"}),
)


def registration_outputs(template_space: str) -> tuple[Output, ...]:
    """Transforms (template -> native) and the registration quality figure."""
    xfm = {"from_space": template_space, "to_space": "orig", "mode": "image"}
    return (
        Output("affine_xfm", "xfm", ".mat", dict(xfm, description="affine")),
        Output("warp_xfm", "xfm", ".nii.gz", dict(xfm, description="warp")),
        Output("registration_figure", "qc", ".png", {"description": "atlasreg"},
               datatype="figures"),
    )


def init_ds_run_wf(*, out_dir: str, entities: dict, static_metadata: dict,
                   outputs: tuple[Output, ...] = QSM_OUTPUTS,
                   name: str = "ds_run_wf") -> pe.Workflow:
    """Write all derivatives of one run in a single all-or-nothing sink.

    Inputs
    ------
    One field per entry of ``outputs`` (e.g. chi_ppm, brain_mask, roi_table ...), and
    inversion_metadata, merged into the Chimap sidecar.
    """
    workflow = pe.Workflow(name=name)
    fields = [o.field for o in outputs]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields + ["inversion_metadata"]),
                        name="inputnode")
    merge = pe.Node(niu.Merge(len(fields)), name="merge", run_without_submitting=True)
    out_paths = [str(derivative_path(".", {**entities, **o.entities}, o.suffix, o.extension,
                                     datatype=o.datatype)) for o in outputs]
    sidecars = [dict(o.sidecar, **(static_metadata if o.suffix == "Chimap" else {}))
                for o in outputs]
    sink = pe.Node(DerivativesSink(out_dir=out_dir, out_paths=out_paths, sidecars=sidecars),
                   name="ds_run", run_without_submitting=True)
    workflow.connect([(inputnode, merge, [(f, f"in{i + 1}") for i, f in enumerate(fields)]),
                      (merge, sink, [("out", "in_files")]),
                      (inputnode, sink, [("inversion_metadata", "chimap_metadata")])])
    return workflow
