"""The top-level workflow: one QSM sub-workflow per GRE run of every participant."""

from __future__ import annotations

from dataclasses import dataclass

from nipype.pipeline import engine as pe

from qsmflow import __version__
from qsmflow.algorithms.bgremove import describe_background_removal
from qsmflow.analysis.roi import ROI_ERODE_MM
from qsmflow.atlases import OUTPUT_SPACES, TEMPLATE_REFERENCE_URI, TEMPLATE_RESOLUTIONS, Atlas
from qsmflow.bids.discovery import GRERun
from qsmflow.interfaces.atlas import RegisterAtlas, RegistrationFigure
from qsmflow.interfaces.roi import ROIStats
from qsmflow.interfaces.template_space import ResampleToTemplate, WarpTemplateMask

from .outputs import (
    ROI_OUTPUTS,
    init_ds_run_wf,
    qsm_outputs,
    registration_outputs,
    template_outputs,
)
from .qsm import init_qsm_wf


@dataclass(frozen=True)
class RunLabels:
    """Native-space labels supplied by the user for a run's ROI table."""

    image: str
    tsv: str
    atlas: str


def _relative_to_dataset(path: str) -> str:
    """``sub-01/anat/...``: the part of a raw file's path from its subject folder on."""
    parts = path.replace("\\", "/").split("/")
    starts = [i for i, p in enumerate(parts) if p.startswith("sub-")]
    return "/".join(parts[starts[0]:]) if starts else path


def run_workflow_name(run: GRERun) -> str:
    return run.label.replace("-", "_") + "_wf"


def init_single_run_wf(
    run: GRERun,
    *,
    out_dir: str,
    qsm_options: dict,
    atlas: Atlas | None = None,
    labels: RunLabels | None = None,
    chi_reference: str = "whole_brain",
    roi_erode_mm: float = ROI_ERODE_MM,
    output_spaces: tuple[str, ...] = (),
    provenance: dict | None = None,
    registration_nthreads: int | None = None,
) -> pe.Workflow:
    """QSM of one run, its deep gray matter ROI table and its derivatives.

    ROIs come from ``labels`` (native-space images the user supplies) when given, else
    from ``atlas`` registered to the run's magnitude; with neither, no table is made.
    ``output_spaces`` (keys of ``qsmflow.atlases.OUTPUT_SPACES``; at most one, the
    atlas's own space) adds chi and the QSM mask resampled into the atlas's template
    through that registration.
    """
    spaces = [OUTPUT_SPACES[value] for value in output_spaces]
    if spaces and (labels is not None or atlas is None or len(spaces) > 1
                   or spaces[0][0] != atlas.space):
        raise ValueError(f"output spaces {list(output_spaces)} need the registration of an "
                         "atlas in that one space (and no user labels)")
    workflow = pe.Workflow(name=run_workflow_name(run))
    qsm_wf = init_qsm_wf(echo_times_s=list(run.echo_times_s), b0_t=run.b0_t,
                         phase_units=run.phase_units, phase_units_from=run.phase_units_from,
                         phase_sign=run.phase_sign, **qsm_options)
    for field in ("magnitude_files", "phase_files", "real_files", "imag_files"):
        if getattr(run, field):
            setattr(qsm_wf.get_node("inputnode").inputs, field, list(getattr(run, field)))
    static_metadata = {
        "EchoTime": list(run.echo_times_s), "MagneticFieldStrength": run.b0_t,
        "Sources": [f"bids:raw:{_relative_to_dataset(f)}"
                    for f in run.files],
        "GeneratedBy": [{"Name": "qsmflow", "Version": __version__}],
        **(provenance or {}),
    }
    # The sidecars name the background removal that the run's node is set to run.
    bgremove = qsm_wf.get_node("bgremove").inputs
    outputs = qsm_outputs(describe_background_removal(bgremove.method, bgremove.refine))
    if labels is not None:
        outputs += ROI_OUTPUTS
    elif atlas is not None:
        outputs += ROI_OUTPUTS + registration_outputs(atlas.space)
        for space, res in spaces:
            outputs += template_outputs(space, res, TEMPLATE_RESOLUTIONS[res],
                                        TEMPLATE_REFERENCE_URI)
    ds_wf = init_ds_run_wf(out_dir=out_dir, entities=run.entities,
                           static_metadata=static_metadata, outputs=outputs)
    workflow.connect([(qsm_wf, ds_wf, [
        ("outputnode.chi_ppm", "inputnode.chi_ppm"),
        ("outputnode.brain_mask", "inputnode.brain_mask"),
        ("outputnode.eroded_mask", "inputnode.eroded_mask"),
        ("outputnode.total_field_hz", "inputnode.total_field_hz"),
        ("outputnode.local_field_hz", "inputnode.local_field_hz"),
        ("outputnode.magnitude", "inputnode.magnitude"),
        ("outputnode.inversion_metadata", "inputnode.inversion_metadata")])])
    if labels is None and atlas is None:
        return workflow

    roi = pe.Node(ROIStats(entities=run.entities, chi_reference=chi_reference,
                           erode_mm=roi_erode_mm), name="roi")
    workflow.connect([(qsm_wf, roi, [("outputnode.chi_ppm", "chi_ppm"),
                                     ("outputnode.eroded_mask", "mask")]),
                      (roi, ds_wf, [("table", "inputnode.roi_table")])])
    if labels is not None:
        roi.inputs.labels, roi.inputs.labels_tsv, roi.inputs.atlas = \
            labels.image, labels.tsv, labels.atlas
        ds_wf.get_node("inputnode").inputs.dseg = labels.image
        ds_wf.get_node("inputnode").inputs.dseg_tsv = labels.tsv
        return workflow

    # MultiProc schedules the registration as one branch (omp_nthreads), so that it runs
    # beside the phase chain; ANTs may run more threads (registration_nthreads): while the
    # chain runs they share its cores, and once it is done the registration has them all.
    n_threads = qsm_options.get("omp_nthreads", 1)
    register = pe.Node(RegisterAtlas(template=str(atlas.template), labels=str(atlas.labels),
                                     n_threads=registration_nthreads or n_threads),
                       name="register_atlas", n_procs=n_threads,
                       mem_gb=2.0)  # 1.3 GB measured at 1 mm
    figure = pe.Node(RegistrationFigure(title=f"{run.label}: {atlas.name} registration"),
                     name="registration_figure")
    roi.inputs.labels_tsv, roi.inputs.atlas = str(atlas.labels_tsv), atlas.name
    ds_wf.get_node("inputnode").inputs.dseg_tsv = str(atlas.labels_tsv)
    workflow.connect([
        (qsm_wf, register, [("outputnode.magnitude", "magnitude"),
                            ("outputnode.brain_mask", "mask")]),
        (register, roi, [("native_labels", "labels"),
                         ("similarity", "registration_similarity")]),
        (qsm_wf, figure, [("outputnode.magnitude", "magnitude")]),
        (register, figure, [("warped_template", "warped_template"),
                            ("native_labels", "labels")]),
        (register, ds_wf, [("native_labels", "inputnode.dseg"),
                           ("affine_xfm", "inputnode.affine_xfm"),
                           ("warp_xfm", "inputnode.warp_xfm"),
                           ("inverse_warp_xfm", "inputnode.inverse_warp_xfm")]),
        (figure, ds_wf, [("figure", "inputnode.registration_figure")]),
    ])
    # The reference regions are recorded in every table (ref_*_ppm), whichever is used;
    # their masks reach the native grid through the registration, as the labels do.
    for field, mask in (("csf_mask", atlas.ventricles), ("wm_mask", atlas.white_matter)):
        if mask is None:
            continue
        warp = pe.Node(WarpTemplateMask(mask=str(mask)), name=f"warp_{field}")
        workflow.connect([
            (qsm_wf, warp, [("outputnode.brain_mask", "reference")]),
            (register, warp, [("affine_xfm", "affine_xfm"), ("warp_xfm", "warp_xfm")]),
            (warp, roi, [("native_mask", field)]),
        ])
    if spaces:
        to_template = pe.Node(ResampleToTemplate(template=str(atlas.template)),
                              name="to_template")
        workflow.connect([
            (qsm_wf, to_template, [("outputnode.chi_ppm", "chi_ppm"),
                                   ("outputnode.eroded_mask", "mask")]),
            (register, to_template, [("affine_xfm", "affine_xfm"),
                                     ("inverse_warp_xfm", "inverse_warp_xfm")]),
            (to_template, ds_wf, [("chi_ppm", "inputnode.template_chi_ppm"),
                                  ("mask", "inputnode.template_mask")]),
        ])
    return workflow


def init_qsmflow_wf(runs: list[GRERun], *, work_dir: str, name: str = "qsmflow_wf",
                    run_labels: dict | None = None, **run_options) -> pe.Workflow:
    """One sub-workflow per run; independent runs execute in parallel under MultiProc.

    ``run_labels`` maps ``run.label`` to :class:`RunLabels`.
    """
    workflow = pe.Workflow(name=name, base_dir=work_dir)
    for run in runs:
        workflow.add_nodes([init_single_run_wf(
            run, labels=(run_labels or {}).get(run.label), **run_options)])
    return workflow
