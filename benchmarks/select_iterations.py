"""Choose how many unrolled NSIDL iterations to run at inference, on validation data only.

    python benchmarks/select_iterations.py WEIGHTS_OR_CHECKPOINT

Validation data: the training script's validation patches (seed + 10000) and a 2 mm
whole-head validation phantom with a hemorrhage and a calcification (seed 4242, the
CFL2 tuning seed of bench_inversion.py). The test phantoms (seed 31337) are not used.
Prints the NRMSE of every iterate; the model card records the choice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inversion import TUNING_SEED, demean, make_phantom  # noqa: E402

from qsmflow.algorithms.metrics import nrmse_percent, roi_regression  # noqa: E402
from qsmflow.dl.nsidl import NSIDL, NSIDLConfig  # noqa: E402
from qsmflow.dl.operators import DipoleOperator  # noqa: E402
from qsmflow.training.synthetic import random_head_models, sample_batch  # noqa: E402
from qsmflow.training.train import VALIDATION_SEED_OFFSET, batch_nrmse_percent  # noqa: E402

LESIONS = (("hemorrhage", (20.0, 14.0, 8.0), 5.0), ("calcification", (-18.0, -24.0, 16.0), 4.0))


def load(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = NSIDLConfig(**state["config"]) if "config" in state else NSIDLConfig()
    model = NSIDL(config)
    model.load_state_dict(state.get("state_dict", state.get("model")))
    return model.eval()


def main(argv=None) -> int:
    path = (argv or sys.argv[1:])[0]
    model = load(path)
    seed = 20251125 + VALIDATION_SEED_OFFSET
    models = random_head_models(seed, 2)
    rng = np.random.default_rng(seed)
    batches = [sample_batch(models, rng, batch_size=2, patch=48) for _ in range(8)]
    per_iteration = np.zeros(model.config.n_iterations)
    with torch.no_grad():
        for b in batches:
            history = model(b.operator, b.field_ppm, b.mask, b.weight, b.phase_scale,
                            return_all=True)
            per_iteration += [batch_nrmse_percent(h, b) for h in history]
    print("validation patches, NRMSE % per iterate:",
          np.round(per_iteration / len(batches), 2).tolist())
    phantom = make_phantom(TUNING_SEED, LESIONS, shape=(90, 108, 90), voxel_mm=2.0)
    mask = phantom["mask"]
    to_t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[None, None]  # noqa: E731
    operator = DipoleOperator(mask.shape, phantom["voxel"], phantom["b0"])
    with torch.no_grad():
        history = model(operator, to_t(phantom["field"]), to_t(mask), to_t(mask), 16.0,
                        return_all=True)
    truth = demean(phantom["truth"], mask)
    for k, h in enumerate(history, start=1):
        estimate = demean(h[0, 0].numpy().astype(float), mask)
        slope, r2 = roi_regression(estimate, truth, phantom["labels"], mask, range(1, 15))
        print(f"validation head, iterate {k}: NRMSE {nrmse_percent(estimate, truth, mask):.1f} "
              f"DGM slope {slope:.3f} R2 {r2:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
