"""The top-level workflow: one QSM sub-workflow per GRE run of every participant."""

from __future__ import annotations

from dataclasses import dataclass

from nipype.pipeline import engine as pe

from qsmflow import __version__
from qsmflow.bids.discovery import GRERun
from qsmflow.interfaces.roi import ROIStats

from .outputs import init_ds_run_wf
from .qsm import init_qsm_wf


@dataclass(frozen=True)
class RunLabels:
    """Native-space labels for a run's ROI table."""

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
    labels: RunLabels | None = None,
    chi_reference: str = "whole_brain",
    roi_erode_vox: int = 0,
    provenance: dict | None = None,
) -> pe.Workflow:
    """QSM of one run, its ROI table (when labels are given) and its derivatives."""
    workflow = pe.Workflow(name=run_workflow_name(run))
    qsm_wf = init_qsm_wf(echo_times_s=list(run.echo_times_s), b0_t=run.b0_t, **qsm_options)
    qsm_wf.get_node("inputnode").inputs.magnitude_files = list(run.magnitude_files)
    qsm_wf.get_node("inputnode").inputs.phase_files = list(run.phase_files)
    static_metadata = {
        "EchoTime": list(run.echo_times_s), "MagneticFieldStrength": run.b0_t,
        "Sources": [f"bids:raw:{_relative_to_dataset(f)}"
                    for f in run.magnitude_files + run.phase_files],
        "GeneratedBy": [{"Name": "qsmflow", "Version": __version__}],
        **(provenance or {}),
    }
    ds_wf = init_ds_run_wf(out_dir=out_dir, entities=run.entities,
                           static_metadata=static_metadata, with_roi=labels is not None)
    workflow.connect([(qsm_wf, ds_wf, [
        ("outputnode.chi_ppm", "inputnode.chi_ppm"),
        ("outputnode.brain_mask", "inputnode.brain_mask"),
        ("outputnode.eroded_mask", "inputnode.eroded_mask"),
        ("outputnode.total_field_hz", "inputnode.total_field_hz"),
        ("outputnode.local_field_hz", "inputnode.local_field_hz"),
        ("outputnode.inversion_metadata", "inputnode.inversion_metadata")])])
    if labels is not None:
        roi = pe.Node(ROIStats(labels=labels.image, labels_tsv=labels.tsv, atlas=labels.atlas,
                               entities=run.entities, chi_reference=chi_reference,
                               erode_vox=roi_erode_vox), name="roi")
        ds_wf.get_node("inputnode").inputs.dseg = labels.image
        ds_wf.get_node("inputnode").inputs.dseg_tsv = labels.tsv
        workflow.connect([
            (qsm_wf, roi, [("outputnode.chi_ppm", "chi_ppm"),
                           ("outputnode.eroded_mask", "mask")]),
            (roi, ds_wf, [("table", "inputnode.roi_table")]),
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
