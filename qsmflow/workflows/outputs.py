"""Derivative outputs of one run, named from BIDS entities."""

from __future__ import annotations

from dataclasses import dataclass, field

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from qsmflow.bids.naming import derivative_path
from qsmflow.interfaces.derivatives import DerivativesSink, FirstVolume


@dataclass(frozen=True)
class Output:
    """One derivative file: the sink input it comes from and how it is named."""

    field: str
    suffix: str
    extension: str
    entities: dict = field(default_factory=dict)
    sidecar: dict = field(default_factory=dict)
    datatype: str = "anat"
    first_volume: bool = False  # write only the first volume (echo 1) of a 4-D input
    derived_from: tuple[str, ...] = ()  # fields of other outputs listed in its Sources
    spatial_reference: str = ""  # for images not on the run's grid (template space)


# BIDS Derivatives: a field map is a ``fieldmap`` in ``fmap/`` (Units Hz) and needs a
# ``magnitude`` beside it; masked maps say ``SkullStripped``. Every image's sidecar also
# gets ``Sources`` and ``SpatialReference`` (init_ds_run_wf). docs/bids_validation.md.
def qsm_outputs(background_removal: str) -> tuple[Output, ...]:
    """The QSM chain's derivatives; the QSM mask and the local field name
    ``background_removal``, the method that ran (``describe_background_removal``)."""
    return (
        Output("chi_ppm", "Chimap", ".nii.gz", sidecar={
            "Units": "ppm", "Description": "magnetic susceptibility (SI, volume), inside the mask",
            "SkullStripped": True}),
        Output("brain_mask", "mask", ".nii.gz", {"description": "brain"}, {
            "Type": "Brain", "Description": "brain mask (from the first-echo magnitude, or the "
            "mask given with --brain-mask-dir)"}),
        Output("eroded_mask", "mask", ".nii.gz", {"description": "qsm"}, {
            "Type": "ROI",
            "Description": f"voxels where the local field and chi are valid (after "
                           f"{background_removal})"},
            derived_from=("brain_mask",)),
        Output("total_field_hz", "fieldmap", ".nii.gz", {"description": "total"}, {
            "Units": "Hz", "Description": "unwrapped total field, phase offset removed; defined "
            "up to a field that is harmonic inside the mask", "SkullStripped": True},
            datatype="fmap", derived_from=("brain_mask",)),
        Output("local_field_hz", "fieldmap", ".nii.gz", {"description": "local"}, {
            "Units": "Hz", "Description": f"local field after {background_removal}",
            "SkullStripped": True}, datatype="fmap", derived_from=("total_field_hz",)),
        Output("magnitude", "magnitude", ".nii.gz", sidecar={
            "Description": "first-echo magnitude, the anatomical reference of the field maps",
            "SkullStripped": False}, datatype="fmap", first_volume=True),
    )


# The columns of the label table beyond BIDS' index and name.
DSEG_COLUMNS = {
    "roi": {"Description": "the structure, without its hemisphere"},
    "hemisphere": {"Description": "the hemisphere of the structure"},
    "source": {"Description": "where the label comes from: the atlas and its label number"},
}

ROI_OUTPUTS = (
    Output("roi_table", "chistats", ".csv", {"description": "deepgm"}),
    Output("dseg", "dseg", ".nii.gz", {"space": "orig", "description": "deepgm"}, {
        "Description": "deep gray matter labels on the run's grid (the atlas registered to "
        "the first-echo magnitude, or the labels given with --roi-labels-dir); the label "
        "table is the .tsv of the same name", **DSEG_COLUMNS},
        derived_from=("warp_xfm", "affine_xfm")),
    Output("dseg_tsv", "dseg", ".tsv", {"space": "orig", "description": "deepgm"}),
)


def registration_outputs(template_space: str) -> tuple[Output, ...]:
    """Transforms and the registration quality figure. Template -> native is the affine,
    then the warp; native -> template is the inverse warp (``from-orig_to-<template>``),
    then the inverted affine (ANTs: ``-t [affine,1] -t inverse_warp``)."""
    xfm = {"from_space": template_space, "to_space": "orig", "mode": "image"}
    inverse = {"from_space": "orig", "to_space": template_space, "mode": "image"}
    return (
        Output("affine_xfm", "xfm", ".mat", dict(xfm, description="affine")),
        Output("warp_xfm", "xfm", ".nii.gz", dict(xfm, description="warp")),
        Output("inverse_warp_xfm", "xfm", ".nii.gz", dict(inverse, description="warp")),
        Output("registration_figure", "qc", ".png", {"description": "atlasreg"},
               datatype="figures"),
    )


def template_outputs(space: str, res: str, resolution: str,
                     spatial_reference: str) -> tuple[Output, ...]:
    """Chi and the QSM mask resampled into a template ``space`` at resolution ``res``
    (``resolution`` says what it is, as BIDS asks of the res entity)."""
    entities = {"space": space, "res": res}
    via = ("affine_xfm", "inverse_warp_xfm")
    return (
        Output("template_chi_ppm", "Chimap", ".nii.gz", entities, {
            "Units": "ppm", "Description": f"magnetic susceptibility (SI, volume) in {space}: "
            "the native Chimap through the inverse of the atlas registration, cubic B-spline "
            "interpolation of chi extended beyond the QSM mask by its nearest voxel's value "
            "(voxels outside it do not count); 0 outside the resampled mask", "SkullStripped": True,
            "Resolution": resolution}, derived_from=("chi_ppm", *via),
            spatial_reference=spatial_reference),
        Output("template_mask", "mask", ".nii.gz", dict(entities, description="qsm"), {
            "Type": "ROI", "Description": f"the QSM mask in {space} (linearly "
            "interpolated, >= 0.5)", "Resolution": resolution},
            derived_from=("eroded_mask", *via), spatial_reference=spatial_reference),
    )


def _sidecars(outputs: tuple[Output, ...], out_paths: list[str],
              static_metadata: dict) -> list[dict]:
    """Each output's sidecar: its own keys, and for every image ``Sources`` (the run's raw
    files, then the other outputs it is made from, as BIDS URIs) and ``SpatialReference``
    (the run's first raw file, the first echo, whose grid every output shares, except
    those in a template space, which name the template). A
    ``.tsv`` shares the sidecar of the image of the same name, so it gets none."""
    raw_sources = list(static_metadata.get("Sources", []))
    path_of = {o.field: path for o, path in zip(outputs, out_paths, strict=True)}
    sidecars = []
    for o in outputs:
        sidecar = dict(o.sidecar)
        if o.extension in (".nii.gz", ".nii") and o.suffix != "xfm" and raw_sources:
            sidecar["Sources"] = raw_sources + [f"bids::{path_of[f]}" for f in o.derived_from
                                                if f in path_of]
            sidecar["SpatialReference"] = o.spatial_reference or raw_sources[0]
        if o.suffix == "Chimap":
            sidecar = dict(static_metadata, **sidecar)
        sidecars.append(sidecar)
    return sidecars


def init_ds_run_wf(*, out_dir: str, entities: dict, static_metadata: dict,
                   outputs: tuple[Output, ...],
                   name: str = "ds_run_wf") -> pe.Workflow:
    """Write all derivatives of one run in a single all-or-nothing sink.

    Inputs
    ------
    One field per entry of ``outputs`` (e.g. chi_ppm, brain_mask, roi_table ...), and
    inversion_metadata, merged into the Chimap sidecar. An output with ``first_volume``
    (the field maps' magnitude) takes a 4-D image and writes its first volume.
    """
    workflow = pe.Workflow(name=name)
    fields = [o.field for o in outputs]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields + ["inversion_metadata"]),
                        name="inputnode")
    merge = pe.Node(niu.Merge(len(fields)), name="merge", run_without_submitting=True)
    out_paths = [str(derivative_path(".", {**entities, **o.entities}, o.suffix, o.extension,
                                     datatype=o.datatype)) for o in outputs]
    sidecars = _sidecars(outputs, out_paths, static_metadata)
    sink = pe.Node(DerivativesSink(out_dir=out_dir, out_paths=out_paths, sidecars=sidecars),
                   name="ds_run", run_without_submitting=True)
    for i, o in enumerate(outputs):
        if o.first_volume:
            first = pe.Node(FirstVolume(), name=f"first_volume_{o.field}")
            workflow.connect([(inputnode, first, [(o.field, "in_file")]),
                              (first, merge, [("out_file", f"in{i + 1}")])])
        else:
            workflow.connect(inputnode, o.field, merge, f"in{i + 1}")
    workflow.connect([(merge, sink, [("out", "in_files")]),
                      (inputnode, sink, [("inversion_metadata", "chimap_metadata")])])
    return workflow
