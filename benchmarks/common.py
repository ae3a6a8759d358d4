"""Shared helpers of the benchmarks: peak-memory sampling and timing."""

from __future__ import annotations

import platform
import threading
import time
from contextlib import contextmanager

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
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")
