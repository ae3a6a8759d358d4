"""Choose the regularisation of every classical inversion on one tuning head, by a stated grid.

    python benchmarks/tune_classical.py [--subject 04] [--pose=-12,8,-5] [--only tkd cfl2 ...]

(writes ``benchmarks/results/classical_tuning.json``)

Data: ``qsmflow.simulation.wholehead`` on tuning subject 04 (``TUNING_SUBJECTS``; never a
test head), 1 mm, 3T, seed 0, in a pose used by no test head (rotated -12/8/-5 degrees
about x/y/z; the test heads are 18 straight and 20 oblique 18/-10/6). Each method inverts
the true local field (ppm) in the true brain mask, as in ``bench_inversion_heads.py``.
The grid point of least NRMSE is chosen (HFEN and XSIM are recorded beside it); the
chosen values are the methods' defaults in ``qsmflow/algorithms/inversion*.py``, and the
same values serve every test head.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_inversion_heads import B0_T, head_truth, merge_result, scores  # noqa: E402

from qsmflow.algorithms.inversion import cfl2, ndi, tkd  # noqa: E402
from qsmflow.algorithms.inversion_rts import rts  # noqa: E402
from qsmflow.algorithms.inversion_tv import tv  # noqa: E402
from qsmflow.constants import rad_per_ppm  # noqa: E402

GRIDS = {
    "tkd": {"threshold": [0.06, 0.08, 0.10, 0.12, 0.15, 0.19, 0.24, 0.30]},
    "cfl2": {"lam": [1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2]},
    "rts": {"mu": [1e3, 1e4, 1e5], "lsmr_iterations": [4, 20]},
    "tv": {"lam": [3e-5, 1e-4, 3e-4]},  # rho = 100 lam: ADMM's speed only
    "ndi": {"n_iterations": [10, 20, 30, 40, 60, 80, 100, 150, 200]},  # step 2.0 fixed
}
GENERATOR = ("qsmflow.simulation.wholehead (BrainWeb subject 04; tuning split), pose "
             "-12/8/-5 degrees, 1 mm, 3T, seed 0: true local field and true brain mask")


def tune(name: str, data: dict, log) -> list[dict]:
    field, mask = data["local_field_ppm"].astype(np.float64), data["mask"]
    vsz, b0 = data["voxel_size_mm"], data["b0_direction"]
    truth = data["chi_ppm"]
    rows = []

    def record(params, chi, seconds):
        rows.append({**params, **scores(chi, truth, mask), "wall_s": seconds})
        log(f"{name} {params} NRMSE {rows[-1]['nrmse_percent']:.2f} HFEN "
            f"{rows[-1]['hfen_percent']:.2f} XSIM {rows[-1]['xsim']:.3f} ({seconds:.0f} s)")

    start = time.perf_counter()
    if name == "ndi":  # one run: early stopping is NDI's regulariser, every iterate is seen
        wanted = set(GRIDS["ndi"]["n_iterations"])
        ndi(field, mask, vsz, b0, phase_scale_rad_per_ppm=rad_per_ppm(B0_T, float(np.mean(
            data["te_s"]))), n_iterations=max(wanted), callback=lambda i, chi: record(
                {"n_iterations": i}, chi, time.perf_counter() - start) if i in wanted else None)
        return rows
    if name == "tv":
        for lam in GRIDS["tv"]["lam"]:
            t = time.perf_counter()
            record({"lam": lam}, tv(field, mask, vsz, b0, lam=lam), time.perf_counter() - t)
        return rows
    if name == "rts":
        for mu in GRIDS["rts"]["mu"]:
            for iterations in GRIDS["rts"]["lsmr_iterations"]:
                t = time.perf_counter()
                record({"mu": mu, "lsmr_iterations": iterations},
                       rts(field, mask, vsz, b0, mu=mu, lsmr_iterations=iterations),
                       time.perf_counter() - t)
        return rows
    function, (key, values) = {"tkd": tkd, "cfl2": cfl2}[name], next(iter(GRIDS[name].items()))
    for value in values:
        t = time.perf_counter()
        record({key: value}, function(field, mask, vsz, b0, **{key: value}),
               time.perf_counter() - t)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subject", default="04")
    p.add_argument("--pose", default="-12,8,-5", help="degrees about x,y,z, or a named pose")
    p.add_argument("--only", nargs="+", choices=list(GRIDS), default=list(GRIDS))
    p.add_argument("--cache-dir", default="/tmp/qsmflow_heads")
    args = p.parse_args(argv)
    from qsmflow.simulation.wholehead import TUNING_SUBJECTS

    if args.subject not in TUNING_SUBJECTS:
        p.error(f"--subject {args.subject} is not a tuning subject {TUNING_SUBJECTS}")
    data = dict(np.load(head_truth(args.subject, args.pose, cache_dir=Path(args.cache_dir))))
    command = "python benchmarks/tune_classical.py " + " ".join(argv or sys.argv[1:])
    for name in args.only:
        rows = tune(name, data, lambda line: print(line, flush=True))
        best = min(rows, key=lambda r: r["nrmse_percent"])
        print(f"== {name}: chosen {best}", flush=True)

        def add(results, name=name, rows=rows, best=best):
            results.update(subject=args.subject, pose_deg=args.pose)
            results.setdefault("grids", {})[name] = GRIDS[name]
            results.setdefault("methods", {})[name] = {"grid": rows, "chosen": best}

        merge_result("classical_tuning", add, command=command.strip(), generator=GENERATOR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
