"""Run every benchmark, then regenerate ``docs/benchmarks.md`` from their results.

    python benchmarks/run_all.py [--only NAME ...] [--docs-only]

Each benchmark runs in its own process (its peak memory is its own), one after another so
that their timings do not disturb each other. A benchmark that fails is reported and the
others still run; the exit code is 1 if any failed. The page is regenerated from every
result on disk, so a failed benchmark keeps its last recorded numbers (with their date).
Expect tens of minutes on a 2-core machine (NDI in the inversion benchmark alone takes
minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, arguments): the order runs the quick, independent ones first.
BENCHMARKS = [
    ("check_romeo", ["check_romeo.py"]),
    ("phase_speed", ["bench_phase.py", "speed"]),
    ("phase_accuracy", ["bench_phase.py", "accuracy"]),
    ("phase_accuracy_1mm", ["bench_phase.py", "accuracy-1mm"]),
    ("single_step_bgremove", ["bench_single_step_bgremove.py"]),
    ("registration", ["bench_registration.py"]),
    ("bgremove_choice", ["bench_bgremove_choice.py"]),
    ("demo", ["bench_demo.py"]),
    ("inversion", ["bench_inversion.py"]),
    ("classical_tuning", ["tune_classical.py"]),
    ("inversion_heads", ["bench_inversion_heads.py"]),
    ("nsidl_large", ["bench_nsidl_large.py"]),
    ("brain_mask", ["bench_brain_mask.py"]),
    ("wholehead_1mm", ["bench_wholehead.py", "--voxel-size-mm", "1"]),
    ("wholehead_2mm", ["bench_wholehead.py", "--voxel-size-mm", "2"]),
    ("participant", ["bench_participant.py"]),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        choices=[name for name, _ in BENCHMARKS])
    parser.add_argument("--docs-only", action="store_true",
                        help="only regenerate docs/benchmarks.md from the recorded results")
    args = parser.parse_args(argv)
    failed = []
    if not args.docs_only:
        for name, arguments in BENCHMARKS:
            if args.only and name not in args.only:
                continue
            script = HERE / arguments[0]
            if not script.is_file():
                print(f"== {name}: {script.name} does not exist yet, skipped", flush=True)
                continue
            print(f"== {name}: python benchmarks/{' '.join(arguments)}", flush=True)
            start = time.perf_counter()
            code = subprocess.call([sys.executable, str(script), *arguments[1:]])
            print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
            if code:
                failed.append(name)
    code = subprocess.call([sys.executable, str(HERE / "make_docs.py")])
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed or code else 0


if __name__ == "__main__":
    sys.exit(main())
