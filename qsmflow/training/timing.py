"""Inference time and peak memory of NSIDL configs on a 1 mm whole brain (untrained weights).

``python -m qsmflow.training.timing`` runs each candidate config in its own process (so
that each peak RSS is its own) on the MNI152 brain mask at 1 mm, cropped to the mask's
bounding box plus a margin, as the pipeline's inference is to crop it, and prints one
JSON line per config: wall and CPU time and the 1-minute load average (on a shared machine
the CPU time of a 1-thread run is the steadier number). Random weights: time does not
depend on their values.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

CANDIDATES = ("12:5:shared", "12:5:unshared", "14:5:unshared", "16:5:unshared")
CROP_MARGIN_VOX = 4


def bounding_box(mask, margin: int):
    """Slices of the mask's bounding box grown by ``margin`` voxels (clipped to the grid)."""
    where = np.argwhere(mask)
    lo = np.maximum(where.min(0) - margin, 0)
    hi = np.minimum(where.max(0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def time_one(spec: str, threads: int) -> dict:
    import torch

    from qsmflow.dl.nsidl import NSIDL, NSIDLConfig
    from qsmflow.dl.operators import DipoleOperator
    from qsmflow.simulation.anatomy import load_mni_anatomy

    width, iterations, sharing = spec.split(":")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = NSIDLConfig(n_iterations=int(iterations), width=int(width),
                         shared_prox=sharing == "shared")
    model = NSIDL(config).eval()
    for p in model.parameters():  # untrained weights, but not the identity map
        torch.nn.init.normal_(p, std=0.02)
    brain = load_mni_anatomy().brain
    box = bounding_box(brain, CROP_MARGIN_VOX)
    mask = brain[box].astype(np.float32)
    rng = np.random.default_rng(0)
    field = (rng.normal(scale=0.02, size=mask.shape) * mask).astype(np.float32)
    to_t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch.no_grad():
        operator = DipoleOperator(mask.shape, (1.0, 1.0, 1.0), (0.1, 0.2, 0.97))
        model(operator, to_t(field), to_t(mask), to_t(mask), 10.0)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    n_params = sum(p.numel() for p in model.parameters())
    return {"config": config.to_dict(), "parameters": n_params, "threads": threads,
            "full_grid": list(brain.shape), "cropped_grid": list(mask.shape),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--one", help="time one spec WIDTH:ITERATIONS:shared|unshared (internal)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(time_one(args.one, args.threads)), flush=True)
        return 0
    for spec in args.candidates:
        subprocess.run([sys.executable, "-m", "qsmflow.training.timing", "--one", spec,
                        "--threads", str(args.threads)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
