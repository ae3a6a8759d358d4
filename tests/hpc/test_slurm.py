"""qsmflow on a real SLURM scheduler gives the same derivatives as a local run.

Needs a running SLURM cluster that can see this machine's files, such as the single-node
one that ``tests/hpc/start_local_slurm.sh`` starts (``.ci/run`` starts it where it can).
Enabled by ``QSMFLOW_TEST_SLURM=1``; otherwise skipped with the reason. On bids_examples
with TKD and the ground-truth labels (independent of the NSIDL weights), three ways:

* the SLURM array recipe ``workflows/submit_slurm.sh`` (one participant per task, then
  the group level with ``--dependency=afterok``);
* Nipype's SLURM plugin (``--plugin SLURM``: every node a job, qsmflow waits);
* Nipype's SLURMGraph plugin (every node submitted at once with dependencies).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "bids_examples"
TRUTH = EXAMPLES / "derivatives" / "groundtruth"
QSMFLOW = str(Path(sys.executable).with_name("qsmflow"))
OPTIONS = ["--inversion", "tkd", "--roi-labels-dir", str(TRUTH)]
JOB_TIMEOUT_S = 900  # per phase; the whole test takes ~3 min on an idle 2-core machine
FLOAT_ATOL = 1e-6  # ppm or Hz: far below any meaningful difference

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.environ.get("QSMFLOW_TEST_SLURM") != "1",
        reason="SLURM tests are off: start a cluster (bash tests/hpc/start_local_slurm.sh, "
               "as root) and set QSMFLOW_TEST_SLURM=1 (and SLURM_CONF) to run them"),
]


def _run(cmd, *, cwd, timeout=JOB_TIMEOUT_S, env=None):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=env)
    return result.returncode, result.stdout + result.stderr


def _wait_for_jobs_under(folder: Path, timeout=JOB_TIMEOUT_S):
    """Wait until no job submitted from ``folder`` (or below) is pending or running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, out = _run(["squeue", "-h", "-o", "%i|%j|%T|%r|%Z"], cwd=REPO)
        ours = [line for line in out.splitlines()
                if line.split("|")[-1].startswith(str(folder))]
        if code == 0 and not ours:
            return
        time.sleep(2)
    raise AssertionError(f"jobs still queued after {timeout} s:\n" + "\n".join(ours))


def _derivative_files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob(pattern) if p.is_file())


def assert_same_derivatives(reference: Path, other: Path, pattern="sub-*/**/*",
                            min_images: int = 2 * 5) -> None:
    """Same files; same image data (not headers' descriptions) and same tables.
    JSON sidecars hold paths and times, and figures are pictures of the images: only
    their names are compared."""
    files = _derivative_files(reference, pattern)
    assert _derivative_files(other, pattern) == files
    n_images = 0
    for rel in files:
        if rel.name.endswith(".nii.gz"):
            a, b = nib.load(reference / rel), nib.load(other / rel)
            np.testing.assert_allclose(b.affine, a.affine, err_msg=str(rel))
            x, y = np.asarray(a.dataobj), np.asarray(b.dataobj)
            assert x.dtype == y.dtype and x.shape == y.shape, rel
            np.testing.assert_allclose(y, x, rtol=0, atol=FLOAT_ATOL, err_msg=str(rel))
            n_images += 1
        elif rel.suffix in (".csv", ".tsv"):
            sep = "," if rel.suffix == ".csv" else "\t"
            pd.testing.assert_frame_equal(pd.read_csv(other / rel, sep=sep),
                                          pd.read_csv(reference / rel, sep=sep))
    assert n_images >= min_images  # per participant: Chimap, 2 masks, 2 field maps at least


@pytest.fixture(scope="module")
def cluster():
    if not shutil.which("sbatch"):
        pytest.fail("QSMFLOW_TEST_SLURM=1 but there is no sbatch on PATH")
    code, out = _run(["sinfo", "-h", "-o", "%t"], cwd=REPO, timeout=30)
    if code != 0 or not any(s in out for s in ("idle", "mix", "alloc")):
        pytest.fail(f"QSMFLOW_TEST_SLURM=1 but SLURM has no usable node: {out.strip()!r} "
                    f"(SLURM_CONF={os.environ.get('SLURM_CONF')})")
    return out


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The local reference and the three SLURM runs, submitted together to save time."""
    tmp = tmp_path_factory.mktemp("slurm")
    bids = tmp / "bids"
    shutil.copytree(EXAMPLES, bids, ignore=shutil.ignore_patterns("derivatives", "*.py"))
    t0 = time.time()

    # (a) the array recipe, as a user runs it, from its own folder.
    env = dict(os.environ, BIDS_DIR=str(bids), OUT_DIR=str(tmp / "array_out"),
               WORK_DIR=str(tmp / "array_work"), QSMFLOW_CMD=QSMFLOW,
               QSMFLOW_ARGS=" ".join(OPTIONS))
    (tmp / "array_logs").mkdir()
    code, out = _run(["bash", str(REPO / "workflows" / "submit_slurm.sh"), "-c", "1",
                      "--mem=4500M", "--time=15"], cwd=tmp / "array_logs", env=env)
    assert code == 0, out
    array_id, group_id = re.search(r"job (\d+) .*job (\d+)", out).groups()

    # (c) SLURMGraph: returns once every node is submitted.
    graph = subprocess.Popen(
        [QSMFLOW, str(bids), str(tmp / "graph_out"), "participant", "-w",
         str(tmp / "graph_work"), "--plugin", "SLURMGraph", "--plugin-args",
         json.dumps({"dont_resubmit_completed_jobs": True,
                     "sbatch_args": "--mem=1G --time=15"}), *OPTIONS],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # (b) the SLURM plugin: qsmflow polls its jobs and returns when all are done.
    plugin_code, plugin_out = _run(
        [QSMFLOW, str(bids), str(tmp / "plugin_out"), "participant", "-w",
         str(tmp / "plugin_work"), "--plugin", "SLURM", "--plugin-args",
         json.dumps({"sbatch_args": "--mem=1G --time=15"}), *OPTIONS], cwd=tmp)
    graph_out = graph.communicate(timeout=JOB_TIMEOUT_S)[0]

    # The local reference, while the queue drains.
    local_code, local_out = _run(
        [QSMFLOW, str(bids), str(tmp / "local_out"), "participant", "-w",
         str(tmp / "local_work"), "--nprocs", "2", "--omp-nthreads", "1", *OPTIONS], cwd=tmp)
    assert local_code == 0, local_out
    local_group_code, local_group_out = _run(
        [QSMFLOW, str(bids), str(tmp / "local_out"), "group", "--group-by", "group"], cwd=tmp)
    assert local_group_code == 0, local_group_out

    _wait_for_jobs_under(tmp)
    print(f"SLURM: array job {array_id}, group job {group_id}; all done in "
          f"{time.time() - t0:.0f} s")
    return {"tmp": tmp, "bids": bids, "array_logs": tmp / "array_logs",
            "plugin": (plugin_code, plugin_out), "graph": (graph.returncode, graph_out)}


def test_array_recipe_gives_the_local_derivatives(runs):
    tmp = runs["tmp"]
    logs = sorted(runs["array_logs"].glob("qsmflow-participant_*.log"))
    assert len(logs) == 2, "one log per array task"
    for log in logs:
        text = log.read_text()
        assert "done: 1 run(s) succeeded, 0 failed" in text, text[-2000:]
    assert_same_derivatives(tmp / "local_out", tmp / "array_out")


def test_array_recipe_runs_the_group_level_after_the_array(runs):
    tmp = runs["tmp"]
    group_logs = list(runs["array_logs"].glob("qsmflow-group_*.log"))
    assert len(group_logs) == 1 and "group level:" in group_logs[0].read_text()
    for table in ("long", "wide", "summary", "comparison"):
        name = f"group/group_desc-deepgm_{table}.csv"
        pd.testing.assert_frame_equal(pd.read_csv(tmp / "array_out" / name),
                                      pd.read_csv(tmp / "local_out" / name))


def test_nipype_slurm_plugin_gives_the_local_derivatives(runs):
    code, out = runs["plugin"]
    assert code == 0, out[-3000:]
    assert "done: 2 run(s) succeeded, 0 failed" in out
    assert "sub-01: dipole inversion" in out  # progress lines come back from the jobs
    assert_same_derivatives(runs["tmp"] / "local_out", runs["tmp"] / "plugin_out")


def test_nipype_slurmgraph_plugin_submits_and_gives_the_local_derivatives(runs):
    """SLURMGraph returns once the jobs are submitted: the runs are reported as submitted,
    and the jobs' sinks write the same derivatives. The HTML reports are written by the
    qsmflow process after the runs, so here by a second, local command on the same work
    directory, which finds every step done (README: SLURMGraph)."""
    tmp = runs["tmp"]
    code, out = runs["graph"]
    assert code == 0, out[-3000:]
    assert "submitted 2 run(s) as SLURMGraph jobs" in out
    summary = json.loads(next((tmp / "graph_out" / "logs").glob("*_summary.json")).read_text())
    assert summary["submitted"] == ["sub-01", "sub-02"] and summary["failed"] == {}
    # SLURMGraph writes no report figures: compare the images, in anat/ and fmap/
    assert_same_derivatives(tmp / "local_out", tmp / "graph_out", "sub-*/anat/*", 2 * 3)
    assert_same_derivatives(tmp / "local_out", tmp / "graph_out", "sub-*/fmap/*", 2 * 3)

    t0 = time.time()
    code, out = _run([QSMFLOW, str(runs["bids"]), str(tmp / "graph_out"), "participant", "-w",
                      str(tmp / "graph_work"), "--plugin", "Linear", *OPTIONS], cwd=tmp)
    assert code == 0 and "done: 2 run(s) succeeded, 0 failed" in out, out[-3000:]
    print(f"SLURMGraph: local completion from the work directory took {time.time() - t0:.0f} s")
    assert_same_derivatives(tmp / "local_out", tmp / "graph_out")
