"""Execution options (--plugin, --plugin-args, --nprocs, --omp-nthreads, --mem-gb): validated
before anything runs, and passed on to Nipype as documented. Fast: nothing is computed."""

import json
import os
import subprocess
import sys

import pytest

from qsmflow.atlases import atlas_cache_dir, default_atlas
from qsmflow.bids.discovery import GRERun
from qsmflow.bids.errors import QSMUsageError
from qsmflow.cli.config import EXIT_USAGE, build_config, lone_run_nthreads
from qsmflow.cli.parser import build_parser
from qsmflow.cli.plugins import plugin_arguments
from qsmflow.cli.run import main
from qsmflow.workflows.base import init_qsmflow_wf


@pytest.fixture
def bids(tmp_path):
    """A skeleton dataset: argument validation needs no more than the folder."""
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "skeleton", "BIDSVersion": "1.9.0"}))
    return root


def _main(bids, tmp_path, *options):
    return main([str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 *options])


@pytest.mark.parametrize("options,message", [
    (["--plugin-args", "{not json"], "--plugin-args is not valid JSON"),
    (["--plugin-args", "[1, 2]"], "--plugin-args must be a JSON object"),
    (["--plugin-args", '"sbatch_args"'], "--plugin-args must be a JSON object"),
    (["--plugin", "Linear", "--nprocs", "2"], "--plugin Linear runs one node at a time"),
    (["--nprocs", "2", "--omp-nthreads", "4"], "--omp-nthreads 4 exceeds --nprocs 2"),
    (["--nprocs", "0"], "must be at least 1"),
    (["--omp-nthreads", "0"], "must be at least 1"),
    (["--mem-gb", "0"], "--mem-gb must be positive"),
    (["--plugin", "SLURM", "--nprocs", "4"], "every node is its own cluster job"),
    (["--plugin", "SLURM", "--mem-gb", "8"], "--mem-gb is the memory budget of --plugin "
                                             "MultiProc"),
    (["--plugin", "Linear", "--mem-gb", "8"], "--plugin Linear does not use it"),
    (["--plugin-args", '{"n_procs": 4}'], "may not set 'n_procs': use --nprocs"),
    (["--plugin-args", '{"memory_gb": 4}'], "may not set 'memory_gb': use --mem-gb"),
])
def test_conflicting_or_invalid_options_exit_2_with_a_clear_message(
        bids, tmp_path, capsys, options, message):
    assert _main(bids, tmp_path, *options) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("qsmflow: error: ")
    assert message in err
    assert not (tmp_path / "out").exists()  # nothing was written


def test_unknown_plugin_is_refused_by_the_parser(bids, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main(bids, tmp_path, "--plugin", "Condor")
    assert exit_info.value.code == EXIT_USAGE
    assert "invalid choice: 'Condor'" in capsys.readouterr().err


def _config(bids, tmp_path, *options):
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                      "-w", str(tmp_path / "work"), *options])
    return build_config(args)


def test_threads_default_to_one_for_cluster_plugins(bids, tmp_path):
    """A cluster job has one CPU unless it asks for more; the submit host's count is moot."""
    assert _config(bids, tmp_path, "--plugin", "SLURM").omp_nthreads == 1
    local = _config(bids, tmp_path, "--nprocs", "3")
    assert (local.nprocs, local.omp_nthreads) == (3, 1)


@pytest.mark.parametrize(("nprocs", "omp"), [(1, 1), (2, 1), (4, 2), (8, 4), (16, 8), (64, 8)])
def test_local_threads_default_to_half_the_processes(bids, tmp_path, nprocs, omp):
    """Half the CPUs per node, so that the registration and the phase chain of one
    participant can run at the same time (issue 15), and never more than 8."""
    config = _config(bids, tmp_path, "--nprocs", str(nprocs))
    assert (config.nprocs, config.omp_nthreads) == (nprocs, omp)
    assert _config(bids, tmp_path, "--nprocs", str(nprocs), "--omp-nthreads",
                   str(nprocs)).omp_nthreads == nprocs


@pytest.mark.parametrize("nprocs", [2, 4, 16])
def test_two_nodes_of_default_threads_fit_in_the_pool_side_by_side(bids, tmp_path, nprocs):
    """The registration and the phase chain (each node declares its threads as n_procs)
    can both run at once under the default threads."""
    config = _config(bids, tmp_path, "--nprocs", str(nprocs))
    atlas = default_atlas(atlas_cache_dir(tmp_path))  # the session's shared cache
    workflow = _workflow(tmp_path, config.omp_nthreads, atlas=atlas)
    nodes = {name.split(".")[-1]: workflow.get_node(name)
             for name in workflow.list_node_names()}
    for chain_node in ("unwrap", "bgremove", "invert"):
        assert nodes["register_atlas"].n_procs + nodes[chain_node].n_procs <= nprocs


@pytest.mark.parametrize(("nprocs", "head"), [(1, 1), (2, 2), (3, 2), (4, 4), (16, 16),
                                             (64, 16)])
def test_the_brain_mask_takes_both_branches_threads_by_default(bids, tmp_path, nprocs, head):
    """Nothing of a participant runs beside its mask, so by default it gets the threads
    of both branches (2 x omp, at most nprocs); a given --omp-nthreads holds for it too,
    and a cluster job keeps to one thread."""
    config = _config(bids, tmp_path, "--nprocs", str(nprocs))
    assert config.head_nthreads == head
    workflow = _workflow(tmp_path, config.omp_nthreads, head_nthreads=config.head_nthreads)
    mask = workflow.get_node("sub_01_wf.qsm_wf.mask")
    assert (mask.n_procs, mask.inputs.n_threads) == (head, head)
    assert _workflow(tmp_path, 1).get_node("sub_01_wf.qsm_wf.mask").n_procs == 1
    assert _config(bids, tmp_path, "--nprocs", str(nprocs), "--omp-nthreads",
                   "1").head_nthreads == 1
    assert _config(bids, tmp_path, "--plugin", "SLURM").head_nthreads == 1


def test_a_single_runs_registration_and_inversion_run_the_masks_threads_as_one_branch(
        bids, tmp_path):
    """One run, local, no --omp-nthreads: ANTs and the inversion run head_nthreads threads
    (the cores the other branch leaves idle once it is done), while MultiProc counts
    omp_nthreads so that the branches still run side by side. Several runs, a given
    --omp-nthreads or a cluster plugin: omp_nthreads."""
    config = _config(bids, tmp_path, "--nprocs", "2")
    assert (config.omp_nthreads, config.head_nthreads) == (1, 2)
    assert lone_run_nthreads(config, 1) == 2
    assert lone_run_nthreads(config, 3) == 1
    assert lone_run_nthreads(_config(bids, tmp_path, "--nprocs", "2", "--omp-nthreads",
                                     "1"), 1) == 1
    assert lone_run_nthreads(_config(bids, tmp_path, "--plugin", "SLURM"), 1) == 1
    atlas = default_atlas(atlas_cache_dir(tmp_path))
    node = _workflow(tmp_path, 1, atlas=atlas, registration_nthreads=2).get_node(
        "sub_01_wf.register_atlas")
    assert (node.n_procs, node.inputs.n_threads) == (1, 2)
    node = _workflow(tmp_path, 1, atlas=atlas).get_node("sub_01_wf.register_atlas")
    assert (node.n_procs, node.inputs.n_threads) == (1, 1)
    invert = _invert(_workflow(tmp_path, 1, inversion_nthreads=2))
    assert (invert.n_procs, invert.inputs.n_threads) == (1, 2)
    invert = _invert(_workflow(tmp_path, 1))
    assert (invert.n_procs, invert.inputs.n_threads) == (1, 1)


def _workflow(tmp_path, omp_nthreads, atlas=None, head_nthreads=None,
              registration_nthreads=None, inversion_nthreads=None):
    files = lambda part: tuple(f"/in/sub-01_echo-{e}_part-{part}_MEGRE.nii.gz"  # noqa: E731
                               for e in (1, 2))
    run = GRERun("01", None, None, None, "MEGRE", files("mag"), files("phase"),
                 (0.005, 0.01), 3.0)
    return init_qsmflow_wf([run], work_dir=str(tmp_path / "work"), out_dir=str(tmp_path),
                           qsm_options={"inversion": "tkd", "omp_nthreads": omp_nthreads,
                                        "head_nthreads": head_nthreads,
                                        "inversion_nthreads": inversion_nthreads},
                           atlas=atlas, registration_nthreads=registration_nthreads)


def _invert(workflow):
    return workflow.get_node("sub_01_wf.qsm_wf.invert")


def test_multiproc_gets_nprocs_memory_and_the_progress_callback(bids, tmp_path):
    config = _config(bids, tmp_path, "--nprocs", "3", "--omp-nthreads", "2", "--mem-gb", "6",
                     "--plugin-args", '{"maxtasksperchild": 1}')
    callback = object()
    workflow = _workflow(tmp_path, 2)
    args = plugin_arguments(config, workflow, callback)
    assert args == {"maxtasksperchild": 1, "n_procs": 3, "memory_gb": 6.0,
                    "status_callback": callback}
    # Nipype's 2 s default poll would hold each finished node's successors back.
    assert float(workflow.config["execution"]["poll_sleep_duration"]) == pytest.approx(0.05)


def test_mem_gb_below_a_nodes_need_is_a_usage_error(bids, tmp_path):
    """MultiProc would refuse to start; say which node needs what, before anything runs."""
    workflow = _workflow(tmp_path, 1)
    need = max(workflow.get_node(name).mem_gb for name in workflow.list_node_names())
    config = _config(bids, tmp_path, "--nprocs", "2", "--mem-gb", str(need / 2))
    with pytest.raises(QSMUsageError, match=rf"need\. Give --mem-gb {need:g} or more"):
        plugin_arguments(config, workflow, None)


def test_slurm_jobs_ask_for_the_threads_a_node_uses(bids, tmp_path, monkeypatch):
    monkeypatch.delenv("LOGNAME", raising=False)  # Nipype's SLURM plugin needs it
    config = _config(bids, tmp_path, "--plugin", "SLURM", "--omp-nthreads", "4",
                     "--plugin-args", '{"sbatch_args": "-p short --mem=6G"}')
    workflow = _workflow(tmp_path, 4)
    callback = object()
    args = plugin_arguments(config, workflow, callback)
    assert args == {"sbatch_args": "-p short --mem=6G", "status_callback": callback}
    assert float(workflow.config["execution"]["poll_sleep_duration"]) == 2  # squeue per poll
    assert _invert(workflow).plugin_args == {"sbatch_args": "--cpus-per-task=4"}
    # Unwrapping and background removal run their FFTs on the node's threads too.
    for name in ("unwrap", "bgremove"):
        node = workflow.get_node(f"sub_01_wf.qsm_wf.{name}")
        assert node.plugin_args == {"sbatch_args": "--cpus-per-task=4"}
        assert node.inputs.n_threads == 4
    assert workflow.get_node("sub_01_wf.qsm_wf.combine").plugin_args == {}
    assert os.environ["LOGNAME"]


def test_graph_plugins_get_no_status_callback(bids, tmp_path):
    """Nipype's graph plugins submit every job at once and cannot report nodes back."""
    config = _config(bids, tmp_path, "--plugin", "SLURMGraph", "--plugin-args",
                     '{"dont_resubmit_completed_jobs": true}')
    args = plugin_arguments(config, _workflow(tmp_path, 1), object())
    assert args == {"dont_resubmit_completed_jobs": True}


FORKED_NSIDL = """
import multiprocessing, sys, torch
from qsmflow.dl.weights import load_nsidl
from qsmflow.cli.plugins import single_threaded_torch

def worker():  # what a MultiProc worker does for NSIDL with --omp-nthreads 2
    torch.set_num_threads(2)
    load_nsidl()

if __name__ == "__main__":
    if sys.argv[1] == "fixed":
        single_threaded_torch()
    load_nsidl()  # the scheduling process checks the weights first
    child = multiprocessing.get_context("fork").Process(target=worker)
    child.start()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
    print("hung" if hung else f"exit {child.exitcode}")
"""


def test_forked_workers_can_run_multithreaded_nsidl(tmp_path):
    """MultiProc forks its workers from the scheduling process; NSIDL with 2 threads in a
    worker hung (forever) when that process had used torch with several threads."""
    script = tmp_path / "forked_nsidl.py"
    script.write_text(FORKED_NSIDL)
    result = subprocess.run([sys.executable, str(script), "fixed"], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "exit 0", result.stdout + result.stderr
