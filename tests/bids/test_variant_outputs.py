"""Runs found by discovery (variants, real/imaginary parts) build workflow graphs whose
derivatives carry the run's entities and whose preparation node gets the right files."""

import nibabel as nib
import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from qsmflow.bids.discovery import find_gre_runs
from qsmflow.interfaces.gre import PrepareGRE
from qsmflow.workflows.base import init_qsmflow_wf, run_workflow_name


def _flat_graph(runs, tmp_path):
    wf = init_qsmflow_wf(runs, work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                         qsm_options={"inversion": "tkd"})
    return {node.fullname: node for node in wf._create_flat_graph().nodes}


def test_variant_runs_name_their_derivatives_with_their_entities(skeleton, tmp_path):
    root = skeleton(entities="_rec-norm_flip-1_mt-on")
    skeleton(entities="_rec-norm_flip-2_mt-on")
    runs = find_gre_runs(root).runs
    nodes = _flat_graph(runs, tmp_path)
    for run, flip in zip(runs, ("1", "2"), strict=True):
        assert run.label == f"sub-01_rec-norm_flip-{flip}_mt-on"
        prefix = f"qsmflow_wf.{run_workflow_name(run)}"
        sink = nodes[f"{prefix}.ds_run_wf.ds_run"]
        assert f"sub-01/anat/sub-01_rec-norm_flip-{flip}_mt-on_Chimap.nii.gz" in \
            sink.inputs.out_paths
        inputnode = nodes[f"{prefix}.qsm_wf.inputnode"]
        assert inputnode.inputs.phase_files == list(run.phase_files)


def test_complex_run_hands_real_and_imaginary_files_to_preparation(skeleton, tmp_path):
    runs = find_gre_runs(skeleton(parts=("real", "imag")), phase_sign=-1).runs
    nodes = _flat_graph(runs, tmp_path)
    inputnode = nodes["qsmflow_wf.sub_01_wf.qsm_wf.inputnode"]
    assert inputnode.inputs.real_files == list(runs[0].real_files)
    assert inputnode.inputs.imag_files == list(runs[0].imag_files)
    assert nodes["qsmflow_wf.sub_01_wf.qsm_wf.prepare"].inputs.phase_sign == -1


def test_preparation_runs_in_a_workflow_with_only_real_and_imaginary_files(tmp_path):
    """The unset magnitude/phase fields of the input node do not reach the node."""
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(6, 5, 4, 2)) + 1j * rng.normal(size=(6, 5, 4, 2))
    files = {}
    for part, values in (("real", signal.real), ("imag", signal.imag)):
        files[part] = []
        for echo in range(2):
            path = tmp_path / f"{part}{echo}.nii.gz"
            nib.Nifti1Image(values[..., echo].astype(np.float32), np.eye(4)).to_filename(path)
            files[part].append(str(path))
    wf = pe.Workflow("prep_wf", base_dir=str(tmp_path / "work"))
    inputnode = pe.Node(niu.IdentityInterface(fields=["magnitude_files", "phase_files",
                                                      "real_files", "imag_files"]),
                        name="inputnode")
    inputnode.inputs.real_files, inputnode.inputs.imag_files = files["real"], files["imag"]
    prepare = pe.Node(PrepareGRE(), name="prepare")
    wf.connect(inputnode, "real_files", prepare, "real_files")
    wf.connect(inputnode, "imag_files", prepare, "imag_files")
    wf.connect(inputnode, "magnitude_files", prepare, "magnitude_files")
    wf.connect(inputnode, "phase_files", prepare, "phase_files")
    result = next(iter(wf.run(plugin="Linear").nodes)).result
    stored = signal.astype(np.complex64)
    np.testing.assert_allclose(nib.load(result.outputs.magnitude).get_fdata(),
                               np.abs(stored), rtol=1e-5)
    np.testing.assert_allclose(nib.load(result.outputs.phase_rad).get_fdata(),
                               np.angle(stored), atol=1e-5)
