"""Shared helpers of the benchmarks: peak-memory sampling and timing."""

from __future__ import annotations

import json
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil


@contextmanager
def measure():
    """Yield a dict that gets ``wall_s`` and ``peak_rss_gb`` (sampled every 20 ms)."""
    process = psutil.Process()
    result = {"peak_rss_gb": process.memory_info().rss / 1e9}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            result["peak_rss_gb"] = max(result["peak_rss_gb"], process.memory_info().rss / 1e9)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["wall_s"] = time.perf_counter() - start
        stop.set()
        thread.join()


def machine() -> str:
    return (f"{platform.processor() or platform.machine()} ({_cpu_model()}), "
            f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}")


def _cpu_model() -> str:
    """The CPU's model name: machines of one kind differ (the same ANTs call took 36 s on
    one 2-core machine and 57 s on another), so results name theirs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# The data generators the benchmarks use, named in every result.
MNI_PHANTOM_GENERATOR = (
    "qsmflow.simulation.phantom: MNI 2009a anatomy (nilearn) with AAL3 deep gray labels, "
    "fields from the pipeline's own discrete dipole kernel on the output grid; NSIDL v1 was "
    "trained on this generator, so its NSIDL rows are not held-out")
BIDS_EXAMPLE_GENERATOR = (
    "bids_examples/ (qsmflow.simulation.example_dataset: the whole-head phantom "
    "qsmflow.simulation.wholehead, BrainWeb test heads 18 straight / 20 oblique, 2 mm, "
    "3T, 3 echoes)")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_result(name: str, results: dict, *, command: str, generator: str) -> Path:
    """Record one benchmark's numbers as ``benchmarks/results/<name>.json``.

    Every number that ``docs/benchmarks.md`` quotes comes from such a file (the tables
    there are generated from them), so each result names the command that made it, the
    machine and the data generator (which simulator, anatomy and seed made the data).
    """
    from qsmflow.files import atomic_write_text

    record = {"name": name, "command": command, "generator": generator,
              "machine": machine(), "date": time.strftime("%Y-%m-%d"), "results": results}
    path = RESULTS_DIR / f"{name}.json"
    atomic_write_text(path, json.dumps(record, indent=1, default=float) + "\n")
    return path
