"""``--device cuda`` against ``--device cpu``: NSIDL gives the same chi within a stated tolerance.

    python benchmarks/check_nsidl_cuda.py [--weights W ...] [--out FILE.json]

Needs a CUDA GPU (exits 2 without one). For each weights file (shipped weights, or a
training ``checkpoint.pt``, converted in memory), NSIDL inverts a 1 mm sphere phantom
(``bench_nsidl_large.sphere_phantom``: 40 spheres in an ellipsoidal brain, analytic fields)
on the CPU and on the GPU, with torch's default GPU precision (cuDNN may run float32
convolutions in TF32) and with TF32 off, and on the GPU a 0.5 mm 400 x 400 x 300 volume
in prox tiles against the same volume untiled. Reported per comparison: the relative L2
difference in the mask (%) and the largest absolute difference (ppm); GPU wall times.

Writes ``benchmarks/results/nsidl_cuda.json`` (and a copy at ``--out``).

Tolerance: the GPU result is within ``TOLERANCE_PERCENT`` (relative L2 in the mask) of the
CPU result, the scale of float32 rounding through 5 unrolled iterations and 5 U-Nets, and
a hundred times below the inversion error the benchmarks compare methods on (> 20 %).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_nsidl_large import B0_T, GAMMA_HZ_PER_T, TE_S, sphere_phantom  # noqa: E402
from common import write_result  # noqa: E402

TOLERANCE_PERCENT = 0.1
SEED = 20261204
SHAPE_1MM = (180, 220, 180)
SHAPE_LARGE = (400, 400, 300)


def weights_file(path: Path, tmp: Path) -> Path:
    """Shipped-format weights for ``path`` (a training checkpoint is converted)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" in state:
        return path
    out = tmp / (path.stem + "_weights.pt")
    torch.save({"config": state["log"]["config"], "state_dict": state["model"]}, out)
    return out


def difference(a, b, mask) -> dict:
    d = (a - b)[mask]
    return {"relative_l2_percent": float(100 * np.linalg.norm(d) / np.linalg.norm(b[mask])),
            "max_abs_ppm": float(np.abs(d).max())}


def run(field, mask, voxel_mm, weights, device, *, tf32=True, threads=None,
        max_prox_voxels="default"):
    import torch

    from qsmflow.dl.inference import PROX_TILE_VOXELS, nsidl_invert

    scale = 2 * np.pi * GAMMA_HZ_PER_T * B0_T * TE_S * 1e-6
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        chi, _, _ = nsidl_invert(
            field, mask, (voxel_mm,) * 3, (0.0, 0.0, 1.0), phase_scale_rad_per_ppm=scale,
            weights_path=weights, device=device, n_threads=threads,
            max_prox_voxels=PROX_TILE_VOXELS if max_prox_voxels == "default" else max_prox_voxels)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    return chi, seconds, peak


def main(argv=None) -> int:
    import torch

    from qsmflow.dl.weights import default_weights_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", type=Path, default=[default_weights_path()])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU torch threads")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check", flush=True)
        return 2
    results = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
               "tolerance_percent": TOLERANCE_PERCENT, "seed": SEED, "weights": {}}
    rng = np.random.default_rng(SEED)
    _, mask, field = sphere_phantom(SHAPE_1MM, rng, voxel_mm=1.0)
    _, mask_large, field_large = sphere_phantom(SHAPE_LARGE, rng, voxel_mm=0.5)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.weights:
            weights = weights_file(path, Path(tmp))
            row = {}
            cpu, row["cpu_s"], _ = run(field, mask, 1.0, weights, "cpu", threads=args.threads)
            run(field, mask, 1.0, weights, "cuda")  # warm-up: cuDNN autotuning, CUDA context
            gpu, row["cuda_s"], row["cuda_peak_gb"] = run(field, mask, 1.0, weights, "cuda")
            gpu32, row["cuda_fp32_s"], _ = run(field, mask, 1.0, weights, "cuda", tf32=False)
            row["cuda_vs_cpu"] = difference(gpu, cpu, mask)
            row["cuda_fp32_vs_cpu"] = difference(gpu32, cpu, mask)
            tiled, row["large_tiled_cuda_s"], row["large_tiled_peak_gb"] = run(
                field_large, mask_large, 0.5, weights, "cuda", tf32=False)
            whole, row["large_whole_cuda_s"], row["large_whole_peak_gb"] = run(
                field_large, mask_large, 0.5, weights, "cuda", tf32=False, max_prox_voxels=None)
            row["large_tiled_vs_whole"] = difference(tiled, whole, mask_large)
            row["within_tolerance"] = (
                row["cuda_vs_cpu"]["relative_l2_percent"] <= TOLERANCE_PERCENT)
            ok &= row["within_tolerance"]
            results["weights"][str(path)] = row
            print(path, json.dumps(row, indent=1), flush=True)
    generator = (f"benchmarks/bench_nsidl_large.py's sphere phantom (seed {SEED}): 40 "
                 "spheres in an ellipsoidal brain, analytic fields, 1 mm "
                 f"{SHAPE_1MM} and 0.5 mm {SHAPE_LARGE}, B0 along z")
    command = "python benchmarks/check_nsidl_cuda.py " + " ".join(argv or sys.argv[1:])
    write_result("nsidl_cuda", results, command=command, generator=generator)
    if args.out:  # a copy where the caller wants it (a device machine's $OUT)
        args.out.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
