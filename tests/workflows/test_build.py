"""Workflow graphs build and are wired for single- and multi-echo, with and without sessions."""

import pytest

from qsmflow.bids.discovery import GRERun
from qsmflow.workflows.base import RunLabels, init_qsmflow_wf


def _run(subject="01", session=None, n_echoes=3, suffix="MEGRE"):
    files = lambda part: tuple(f"/in/sub-{subject}_echo-{e}_part-{part}_{suffix}.nii.gz"  # noqa: E731
                               for e in range(1, n_echoes + 1))
    return GRERun(subject, session, None, None, suffix, files("mag"), files("phase"),
                  tuple(0.005 * (e + 1) for e in range(n_echoes)), 3.0)


@pytest.mark.parametrize("n_echoes,session", [(1, None), (4, None), (3, "pre")])
@pytest.mark.parametrize("with_labels", [False, True])
def test_flat_graph_builds(tmp_path, n_echoes, session, with_labels):
    runs = [_run("01", session, n_echoes), _run("02", session, n_echoes)]
    (tmp_path / "l.nii.gz").write_bytes(b"")
    (tmp_path / "l.tsv").write_text("index\tname\n")
    labels = {r.label: RunLabels(str(tmp_path / "l.nii.gz"), str(tmp_path / "l.tsv"), "test")
              for r in runs} if with_labels else None
    wf = init_qsmflow_wf(runs, work_dir=str(tmp_path), out_dir=str(tmp_path / "out"),
                         run_labels=labels, qsm_options={"inversion": "tkd"})
    graph = wf._create_flat_graph()
    names = {node.fullname for node in graph.nodes}
    prefix = "qsmflow_wf.sub_01" + (f"_ses_{session}" if session else "") + "_wf"
    for stage in ("qsm_wf.prepare", "qsm_wf.mask", "qsm_wf.combine", "qsm_wf.unwrap",
                  "qsm_wf.bgremove", "qsm_wf.invert", "ds_run_wf.ds_run"):
        assert f"{prefix}.{stage}" in names
    assert (f"{prefix}.roi" in names) == with_labels
    invert = next(n for n in graph.nodes if n.fullname == f"{prefix}.qsm_wf.invert")
    assert invert.inputs.echo_times_s == [0.005 * (e + 1) for e in range(n_echoes)]
    sink = next(n for n in graph.nodes if n.fullname == f"{prefix}.ds_run_wf.ds_run")
    expected = {"Chimap.nii.gz", "desc-brain_mask.nii.gz", "desc-local_fieldmap.nii.gz",
                "desc-total_fieldmap.nii.gz", "desc-qsm_mask.nii.gz"}
    produced = {p.split("_", 1 + bool(session))[-1] for p in sink.inputs.out_paths}
    assert expected <= produced
    assert ("desc-deepgm_chistats.csv" in produced) == with_labels
    # Every sink input is connected: the merge node feeds one file per output path.
    merge = next(n for n in graph.nodes if n.fullname == f"{prefix}.ds_run_wf.merge")
    fed = {dst for _, _, d in graph.in_edges(merge, data=True) for _, dst in d["connect"]}
    assert len(fed) == len(sink.inputs.out_paths)


def test_template_space_outputs_are_wired(tmp_path):
    from qsmflow.atlases import Atlas

    files = {name: tmp_path / name for name in ("t.nii.gz", "l.nii.gz", "l.tsv", "v.nii.gz",
                                                 "w.nii.gz")}
    for path in files.values():
        path.write_bytes(b"")
    atlas = Atlas("a", files["t.nii.gz"], files["l.nii.gz"], files["l.tsv"],
                  files["v.nii.gz"], "MNI152NLin2009aSym", "test", files["w.nii.gz"])
    wf = init_qsmflow_wf([_run("01")], work_dir=str(tmp_path), out_dir=str(tmp_path / "out"),
                         atlas=atlas, output_spaces=("MNI152NLin2009aSym:res-1",),
                         qsm_options={"inversion": "tkd"})
    graph = wf._create_flat_graph()
    names = {node.fullname for node in graph.nodes}
    prefix = "qsmflow_wf.sub_01_wf"
    for node in ("register_atlas", "to_template", "warp_csf_mask", "warp_wm_mask", "roi"):
        assert f"{prefix}.{node}" in names
    sink = next(n for n in graph.nodes if n.fullname == f"{prefix}.ds_run_wf.ds_run")
    produced = {p.split("/")[-1] for p in sink.inputs.out_paths}
    assert {"sub-01_space-MNI152NLin2009aSym_res-1_Chimap.nii.gz",
            "sub-01_space-MNI152NLin2009aSym_res-1_desc-qsm_mask.nii.gz",
            "sub-01_from-orig_to-MNI152NLin2009aSym_mode-image_desc-warp_xfm.nii.gz"} <= produced
    merge = next(n for n in graph.nodes if n.fullname == f"{prefix}.ds_run_wf.merge")
    fed = {dst for _, _, d in graph.in_edges(merge, data=True) for _, dst in d["connect"]}
    assert len(fed) == len(sink.inputs.out_paths)
    chimap = dict(zip((p.split("/")[-1] for p in sink.inputs.out_paths), sink.inputs.sidecars,
                      strict=True))["sub-01_space-MNI152NLin2009aSym_res-1_Chimap.nii.gz"]
    assert chimap["Units"] == "ppm" and chimap["Resolution"].startswith("1 mm")
    assert chimap["SpatialReference"].startswith("https://")
    assert chimap["Sources"][-3:] == [
        "bids::sub-01/anat/sub-01_Chimap.nii.gz",
        "bids::sub-01/anat/sub-01_from-MNI152NLin2009aSym_to-orig_mode-image_desc-affine_xfm.mat",
        "bids::sub-01/anat/sub-01_from-orig_to-MNI152NLin2009aSym_mode-image_desc-warp_xfm"
        ".nii.gz"]
    with pytest.raises(ValueError, match="need the registration of an atlas"):
        init_qsmflow_wf([_run("01")], work_dir=str(tmp_path), out_dir=str(tmp_path / "out"),
                        output_spaces=("MNI152NLin2009aSym:res-1",),
                        qsm_options={"inversion": "tkd"})
