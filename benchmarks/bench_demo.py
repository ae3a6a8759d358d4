"""Wall time and peak memory of the demo run (`make demo`'s participant level).

    python benchmarks/bench_demo.py [--inversion nsidl] [--nprocs 2]

Peak RSS is the largest sum over qsmflow and its worker processes, sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIDS_EXAMPLE_GENERATOR, machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inversion", default="nsidl")
    parser.add_argument("--nprocs", default="2")
    parser.add_argument("--omp-nthreads", default="1")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(Path(sys.executable).parent / "qsmflow"), str(ROOT / "bids_examples"),
                   f"{tmp}/out", "participant", "-w", f"{tmp}/work", "--nprocs", args.nprocs,
                   "--omp-nthreads", args.omp_nthreads, "--inversion", args.inversion]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        parent = psutil.Process(process.pid)
        peak = 0.0
        while process.poll() is None:
            try:
                procs = [parent] + parent.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs) / 1e9)
            except psutil.Error:
                pass
            time.sleep(0.1)
        wall = time.perf_counter() - start
        output = process.stdout.read()
    print(output)
    print(f"demo ({args.inversion}, --nprocs {args.nprocs} --omp-nthreads "
          f"{args.omp_nthreads}): wall {wall:.1f} s, peak RSS {peak:.2f} GB, exit "
          f"{process.returncode}; machine: {machine()}")
    stage_lines = [line for line in output.splitlines() if " s" in line and "[" in line]
    write_result("demo", dict(inversion=args.inversion, nprocs=int(args.nprocs),
                              omp_nthreads=int(args.omp_nthreads), wall_s=wall,
                              peak_rss_gb=peak, exit_code=process.returncode,
                              progress_lines=stage_lines),
                 command="python benchmarks/bench_demo.py"
                 + ("" if args.inversion == "nsidl" else f" --inversion {args.inversion}"),
                 generator=BIDS_EXAMPLE_GENERATOR)
    return process.returncode


if __name__ == "__main__":
    raise SystemExit(main())
