"""Interrupted runs: SIGKILL in the middle of the inversion, then the same command again,
resumes from the work directory and gives the uninterrupted run's derivatives bit for bit;
Ctrl-C stops the run and its workers with one line and exit code 130."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from qsmflow.cli.config import EXIT_INTERRUPTED, EXIT_OK

from .datasets import (
    assert_same_derivatives,
    qsmflow_command,
    run_qsmflow,
    start_qsmflow,
    wait_for,
)

NODE_DIR = Path("qsmflow_wf", "sub_01_wf", "qsm_wf")


def test_resume_after_sigkill_during_inversion(coarse, tmp_path):
    bids, labels = coarse
    # NDI iterates (slower than TKD), which leaves time to kill the run inside it.
    options = ("--participant-label", "01", "--inversion", "ndi", "--roi-labels-dir", labels,
               "--plugin", "Linear", "--omp-nthreads", "1")
    reference = run_qsmflow(bids, tmp_path / "reference", *options,
                            work=tmp_path / "reference_work")
    assert reference.code == EXIT_OK, reference.stdout + reference.stderr

    work = tmp_path / "work"
    command = qsmflow_command(bids, tmp_path / "out", *options, work=work)
    invert, bgremove = work / NODE_DIR / "invert", work / NODE_DIR / "bgremove"
    killed = start_qsmflow(command, tmp_path / "killed")
    # Nipype writes the node's inputs just before it runs the interface.
    wait_for((invert / "_inputs.pklz").is_file, killed, timeout_s=300,
             what="the inversion stage")
    os.killpg(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert not (invert / "result_invert.pklz").exists(), "the inversion had already finished"
    assert not (tmp_path / "out" / "sub-01").exists()  # nothing half written
    bgremove_result = bgremove / "result_bgremove.pklz"
    bgremove_mtime = bgremove_result.stat().st_mtime_ns

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == EXIT_OK, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert bgremove_result.stat().st_mtime_ns == bgremove_mtime  # reused, not recomputed
    assert (invert / "result_invert.pklz").is_file()
    assert "sub-01: dipole inversion" in resumed.stdout
    # anat/: Chimap, brain and qsm masks, dseg (+ tsv), ROI table, their sidecars (10);
    # fmap/: total and local field maps and the magnitude beside them, with sidecars (6)
    assert assert_same_derivatives(tmp_path / "reference", tmp_path / "out", "01") == 16


def test_ctrl_c_stops_the_run_and_its_workers(coarse, tmp_path):
    bids, labels = coarse
    command = qsmflow_command(bids, tmp_path / "out", "--participant-label", "01", "02",
                              "--roi-labels-dir", labels, "--nprocs", "2",
                              "--omp-nthreads", "1", work=tmp_path / "work")
    process = start_qsmflow(command, tmp_path / "run")
    log = tmp_path / "run.out"
    wait_for(lambda: "load echoes" in log.read_text(), process, timeout_s=300,
             what="the first stage")
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert process.wait(timeout=60) == EXIT_INTERRUPTED
    stdout, stderr = log.read_text(), (tmp_path / "run.err").read_text()
    assert "Traceback" not in stdout + stderr
    assert stderr.startswith("qsmflow: interrupted.") and len(stderr.splitlines()) == 1
    with pytest.raises(ProcessLookupError):  # no worker of the run is left behind
        os.killpg(process.pid, 0)
