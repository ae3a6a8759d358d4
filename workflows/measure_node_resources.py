"""Measure each pipeline node's wall time and peak memory on your own data.

Runs ``qsmflow ... participant`` one node at a time (the Linear plugin, in this process)
with Nipype's psutil resource monitor on, then prints one line per node with its
duration and the peak resident memory of the process while it ran (which includes the
~0.4 GB of Python, Nipype and torch that a cluster job also loads). Use the numbers to
choose ``sbatch_args``/``qsub_args`` per node, with a margin (workflows/README.md).

    python workflows/measure_node_resources.py BIDS_DIR OUT_DIR participant \
        --participant-label 01 -w WORK_DIR [any other qsmflow option]

``--plugin`` and ``--nprocs`` are set here; ``--omp-nthreads N`` (default 1) measures
multi-threaded nodes, then with MultiProc and N processes. Measure one participant.
"""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLE_PERIOD_S = 0.2  # the shortest period Nipype's resource monitor accepts


def _enable_monitor(setup_logging):
    def setup(verbose):
        setup_logging(verbose)
        from nipype import config

        config.set("monitoring", "enabled", "true")
        config.set("execution", "resource_monitor_frequency", str(SAMPLE_PERIOD_S))
        config.enable_resource_monitor()

    return setup


def node_records(work_dir: Path) -> list[dict]:
    """(node, duration_s, peak memory GB, cpu %) from the result files of a run."""
    from nipype.utils.filemanip import loadpkl

    records = []
    for result_file in sorted(work_dir.rglob("result_*.pklz")):
        result = loadpkl(result_file)
        runtime = getattr(result, "runtime", None)
        if runtime is None:
            continue
        rel = result_file.parent.relative_to(work_dir)
        records.append({
            "node": ".".join(rel.parts[1:]),
            "duration_s": float(getattr(runtime, "duration", float("nan"))),
            "mem_peak_gb": float(getattr(runtime, "mem_peak_gb", float("nan"))),
            "cpu_percent": float(getattr(runtime, "cpu_percent", float("nan"))),
        })
    return records


def main(argv=None) -> int:
    from qsmflow.cli import run as cli_run

    argv = list(sys.argv[1:] if argv is None else argv)
    for flag in ("--plugin", "--nprocs"):
        if flag in argv:
            print(f"measure_node_resources: {flag} is set by this script", file=sys.stderr)
            return 2
    if "--omp-nthreads" not in argv:
        argv += ["--omp-nthreads", "1"]
    threads = int(argv[argv.index("--omp-nthreads") + 1])
    # One node at a time: Linear, or for a multi-threaded node MultiProc with a pool of
    # exactly that many CPUs (the chain of one run's nodes still runs one by one).
    plugin = ["--plugin", "Linear"] if threads == 1 else ["--plugin", "MultiProc"]
    work = Path(argv[argv.index("-w") + 1] if "-w" in argv else "work").resolve()
    cli_run._setup_logging = _enable_monitor(cli_run._setup_logging)
    code = cli_run.main(argv + plugin + ["--nprocs", str(threads)])
    print(f"\n{'node':60s} {'time s':>8s} {'peak GB':>8s} {'cpu %':>6s}")
    for rec in node_records(work):
        print(f"{rec['node']:60s} {rec['duration_s']:8.2f} {rec['mem_peak_gb']:8.2f} "
              f"{rec['cpu_percent']:6.0f}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
