"""Choose NSIDL v2's inference settings on the tuning head only: unrolled iterations and a
final data-consistency step.

    python benchmarks/select_nsidl_v2.py WEIGHTS_OR_CHECKPOINT [--bank DIR]
        [--dc-steps 0 2 5 10 20] [--dc-step-size 2.0] [--name nsidl_v2_selection]

(writes ``benchmarks/results/<name>.json``)

Choice data: ``qsmflow.simulation.wholehead`` on tuning subject 04 in the pose of
``tune_classical.py`` (-12/8/-5 degrees; no test head has it), 1 mm, 3T, seed 0: the true
local field in the true brain mask, the data the classical methods' defaults were chosen
on. Never a test head, and not the geometric phantom. Reported beside it, not used for
the choice: the in-distribution validation patches of the training bank (``--bank``).

Grid: the first K = 1..5 unrolled iterations, each followed by d data-consistency steps
(gradient steps of the nonlinear data term alone, step ``--dc-step-size`` normalised by
s^2 as NDI's, from the network's output: ``chi <- mask (chi - t grad f(chi) / s^2)``).
The grid point of least NRMSE on the tuning head is chosen; HFEN and XSIM are recorded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_inversion_heads import B0_T, head_truth, scores  # noqa: E402
from common import write_result  # noqa: E402

from qsmflow.constants import rad_per_ppm  # noqa: E402
from qsmflow.dl.inference import mask_bounding_box  # noqa: E402
from qsmflow.dl.nsidl import NSIDL, NSIDLConfig  # noqa: E402
from qsmflow.dl.operators import DipoleOperator, data_consistency_step  # noqa: E402

TUNING_SUBJECT, TUNING_POSE = "04", "-12,8,-5"
GENERATOR = ("qsmflow.simulation.wholehead (BrainWeb subject 04; tuning split), pose "
             "-12/8/-5 degrees, 1 mm, 3T, seed 0: true local field and true brain mask "
             "(the classical methods' tuning head); beside it, not for the choice: the "
             "training bank's in-distribution validation patches")


def load_model(path: Path) -> NSIDL:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" in state:
        config, weights = state["config"], state["state_dict"]
    else:  # a training checkpoint
        config, weights = state["log"]["config"], state["model"]
    model = NSIDL(NSIDLConfig(**config))
    model.load_state_dict(weights)
    return model.eval()


def with_data_consistency(history, operator, field, mask, weight, s, steps, step_size):
    """Yield (K, d, chi) for every iterate K and number of DC steps d in ``steps``."""
    phase = s * field * mask
    weight_sq = (weight * mask) ** 2
    for k, chi in enumerate(history, start=1):
        done = 0
        for d in sorted(steps):
            while done < d:
                chi = data_consistency_step(operator, chi, mask, phase, weight_sq, s, step_size)
                done += 1
            yield k, d, chi


def tuning_head_grid(model, data, steps, step_size) -> list[dict]:
    mask_full = np.asarray(data["mask"], bool)
    box = mask_bounding_box(mask_full)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a[box], np.float32))[None, None]  # noqa: E731
    mask = to_t(mask_full)
    field = to_t(data["local_field_ppm"])
    s = rad_per_ppm(B0_T, float(np.mean(data["te_s"])))
    operator = DipoleOperator(mask.shape[2:], data["voxel_size_mm"], data["b0_direction"])
    truth = data["chi_ppm"][box]
    rows = []
    with torch.no_grad():
        started = time.perf_counter()
        history = model(operator, field, mask, torch.ones_like(mask), s, return_all=True)
        network_s = time.perf_counter() - started
        for k, d, chi in with_data_consistency(history, operator, field, mask,
                                               torch.ones_like(mask), s, steps, step_size):
            row = {"iterations": k, "dc_steps": d,
                   **scores(chi[0, 0].numpy().astype(float), truth, mask_full[box])}
            rows.append(row)
            print(f"tuning head: K={k} dc={d:3d} NRMSE {row['nrmse_percent']:.2f} "
                  f"HFEN {row['hfen_percent']:.2f} XSIM {row['xsim']:.3f}", flush=True)
    print(f"network (5 iterations) {network_s:.1f} s", flush=True)
    return rows


def bank_validation(model, bank: Path) -> list[float]:
    """In-distribution validation NRMSE (%) per iterate (the training log's patches)."""
    from qsmflow.training.train import VALIDATION_SEED_OFFSET, batch_nrmse_percent
    from qsmflow.training.v2data import IN_DISTRIBUTION, V2Data

    seed = 20261202 + VALIDATION_SEED_OFFSET  # the training run's --seed
    data = V2Data(bank, seed=seed, n_validation=8, patch=48)
    per_iteration = np.zeros(model.config.n_iterations)
    batches = data.validation[IN_DISTRIBUTION]
    with torch.no_grad():
        for b in batches:
            history = model(b.operator, b.field_ppm, b.mask, b.weight, b.phase_scale,
                            return_all=True)
            per_iteration += [batch_nrmse_percent(h, b) for h in history]
    return (per_iteration / len(batches)).tolist()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path)
    p.add_argument("--bank", type=Path, default=None)
    p.add_argument("--dc-steps", type=int, nargs="+", default=[0, 2, 5, 10, 20])
    p.add_argument("--dc-step-size", type=float, default=2.0)
    p.add_argument("--cache-dir", default="/tmp/qsmflow_heads")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="nsidl_v2_selection", help="result name")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    data = dict(np.load(head_truth(TUNING_SUBJECT, TUNING_POSE, cache_dir=Path(args.cache_dir))))
    rows = tuning_head_grid(model, data, args.dc_steps, args.dc_step_size)
    chosen = min(rows, key=lambda r: r["nrmse_percent"])
    print(f"chosen: {chosen}", flush=True)
    results = {"weights": str(args.weights), "tuning_subject": TUNING_SUBJECT,
               "tuning_pose_deg": TUNING_POSE, "dc_step_size": args.dc_step_size,
               "grid": rows, "chosen": chosen}
    if args.bank:
        results["indist_validation_nrmse_percent_per_iterate"] = bank_validation(model, args.bank)
        print("in-distribution validation per iterate:",
              np.round(results["indist_validation_nrmse_percent_per_iterate"], 2).tolist())
    write_result(args.name, results,
                 command="python benchmarks/select_nsidl_v2.py " + " ".join(argv or sys.argv[1:]),
                 generator=GENERATOR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
