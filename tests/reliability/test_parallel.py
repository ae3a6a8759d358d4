"""Parallel safety: ``--nprocs 2`` gives the results of one run at a time, and two qsmflow
processes writing into one OUTPUT_DIR (and one work directory) do not corrupt it."""

import json

from qsmflow.analysis.group import run_group_level
from qsmflow.cli.config import EXIT_OK

from .datasets import assert_same_derivatives, qsmflow_command, run_qsmflow, start_qsmflow


def test_nprocs_2_gives_the_results_of_one_run_at_a_time(mixed_run, tmp_path):
    """The reference, ``mixed_run``, ran its nodes one at a time (``--plugin Linear``)."""
    result = run_qsmflow(mixed_run["bids"], tmp_path / "out", "--participant-label", "01",
                         "02", "--roi-labels-dir", mixed_run["labels"], "--nprocs", "2",
                         "--omp-nthreads", "1", work=tmp_path / "work")
    assert result.code == EXIT_OK, result.stdout + result.stderr
    for sub in ("01", "02"):
        assert_same_derivatives(mixed_run["out"], tmp_path / "out", sub)


def test_two_processes_share_one_output_and_work_dir(mixed_run, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    processes = [start_qsmflow(qsmflow_command(
        mixed_run["bids"], out, "--participant-label", sub, "--roi-labels-dir",
        mixed_run["labels"], "--plugin", "Linear", work=work), tmp_path / f"sub-{sub}")
        for sub in ("01", "02")]
    codes = [process.wait(timeout=600) for process in processes]
    logs = {sub: (tmp_path / f"sub-{sub}.out").read_text() + (tmp_path / f"sub-{sub}.err")
            .read_text() for sub in ("01", "02")}
    assert codes == [EXIT_OK, EXIT_OK], logs

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "qsmflow"
    assert not list(out.rglob("*.tmp"))

    # One config and one summary per process: names carry a time stamp and the PID.
    summaries = sorted(out.glob("logs/qsmflow_*_summary.json"))
    configs = sorted(out.glob("logs/qsmflow_*_config.toml"))
    assert len(summaries) == len(configs) == 2
    assert sorted(json.loads(p.read_text())["succeeded"][0] for p in summaries) == [
        "sub-01", "sub-02"]
    pids = {p.name.split("_")[1].rsplit("-", 1)[1] for p in summaries}
    assert pids == {str(process.pid) for process in processes}

    for sub in ("01", "02"):
        assert_same_derivatives(mixed_run["out"], out, sub)
    group = run_group_level(out, mixed_run["bids"] / "participants.tsv")
    assert sorted(group.long_table["participant_id"].unique()) == ["sub-01", "sub-02"]
