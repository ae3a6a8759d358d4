"""LBV's stopping tolerance: iterations, time and accuracy of the refined local field.

    qsmflow BIDS OUT participant -w WORK --participant-label LABEL --inversion tkd
    python benchmarks/bench_lbv_tolerance.py --work WORK --label LABEL --bids BIDS
        --name NAME [--tolerances 1e-6,1e-4,1e-3,3e-3,1e-2]

The input is the pipeline's own total field and reliable-voxel mask of one participant
(the ``unwrap`` node's outputs in WORK). For each tolerance, the default background removal
(LBV with the dipole-model refinement) runs on it; printed and recorded: the conjugate
gradient iterations of both LBV solves, the wall time, and the NRMSE (both sides demeaned
on the output mask) of the local field against the solve converged to 1e-8 and against the
true local field of ``BIDS/derivatives/groundtruth``. Choose on a tuning head.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from qsmflow.algorithms.bgremove import lbv, refine_with_dipole_model  # noqa: E402
from qsmflow.algorithms.dipole import b0_direction_from_affine  # noqa: E402
from qsmflow.interfaces.images import load_data, load_mask  # noqa: E402

LBV_MODULE = sys.modules["qsmflow.algorithms.bgremove.lbv"]
CONVERGED_TOLERANCE = 1e-8


def nrmse(estimate, reference, mask) -> float:
    d = estimate[mask] - estimate[mask].mean() - (reference[mask] - reference[mask].mean())
    return float(np.linalg.norm(d) / np.linalg.norm(reference[mask] - reference[mask].mean()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--label", required=True, help="participant label, e.g. 04straight")
    parser.add_argument("--bids", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--tolerances", default="1e-6,1e-4,1e-3,3e-3,1e-2")
    args = parser.parse_args()
    unwrap = args.work / "qsmflow_wf" / f"sub_{args.label}_wf" / "qsm_wf" / "unwrap"
    field, affine = load_data(unwrap / "total_field_hz.nii")
    mask = load_mask(unwrap / "reliable_mask.nii")
    truth = load_data(args.bids / "derivatives" / "groundtruth" / f"sub-{args.label}" / "anat"
                      / f"sub-{args.label}_desc-local_fieldmap.nii.gz")[0]
    voxel_size = np.sqrt((affine[:3, :3] ** 2).sum(0))
    b0 = b0_direction_from_affine(affine)

    iterations: list[int] = []
    solve = LBV_MODULE._multigrid_pcg

    def counted(*a, **k):
        x, n = solve(*a, **k)
        iterations.append(n)
        return x, n

    LBV_MODULE._multigrid_pcg = counted

    def run(tol):
        iterations.clear()
        start = time.perf_counter()
        local, eroded = refine_with_dipole_model(
            lambda f, m: lbv(f, m, voxel_size, tol=tol), field, mask, voxel_size, b0)
        return local, eroded, time.perf_counter() - start, list(iterations)

    converged, eroded, seconds, its = run(CONVERGED_TOLERANCE)
    rows = {f"{CONVERGED_TOLERANCE:g}": {"seconds": seconds, "iterations": its,
                                         "nrmse_vs_truth": nrmse(converged, truth, eroded)}}
    print(f"tol {CONVERGED_TOLERANCE:g}: {seconds:.1f} s, iterations {its}, vs truth "
          f"{rows[f'{CONVERGED_TOLERANCE:g}']['nrmse_vs_truth']:.4f}", flush=True)
    for tol in (float(t) for t in args.tolerances.split(",")):
        local, eroded, seconds, its = run(tol)
        rows[f"{tol:g}"] = {"seconds": seconds, "iterations": its,
                            "nrmse_vs_converged": nrmse(local, converged, eroded),
                            "nrmse_vs_truth": nrmse(local, truth, eroded)}
        print(f"tol {tol:g}: {seconds:.1f} s, iterations {its}, vs converged "
              f"{rows[f'{tol:g}']['nrmse_vs_converged']:.5f}, vs truth "
              f"{rows[f'{tol:g}']['nrmse_vs_truth']:.4f}", flush=True)
    write_result(args.name, {"participant": args.label, "tolerances": rows},
                 command="python benchmarks/bench_lbv_tolerance.py " + " ".join(sys.argv[1:]),
                 generator=f"qsmflow.simulation.wholehead: sub-{args.label} of {args.bids} "
                 "(see its participants.tsv for the BrainWeb head, pose and split), 1 mm, "
                 "3T, 5 echoes; the field and mask are qsmflow's own (default settings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
