"""Train NSIDL on synthetic anatomy-based data, on CPU, reproducibly and resumably.

Run ``qsmflow-train-nsidl --out DIR`` (see ``--help``). The run is checkpointed every
``--checkpoint-every`` steps into ``DIR/checkpoint.pt`` and resumes from there when
started again with the same arguments. At the end it writes ``DIR/nsidl.pt`` (the
weights and the model config), ``DIR/training_log.json`` (arguments, seed, losses,
validation metrics, wall time) and prints the weights' sha256.

v1 data (``--data v1``, the default): MNI head models (:mod:`.synthetic`); validation uses
patches from head models built with a different seed from training (the same generator:
in-distribution only). v2 data (``--data v2 --bank DIR``): patches of the fine-grid bank
(:mod:`.bank`, :mod:`.synthetic_v2`); validation is reported twice and labelled: held-out
(analytic spheres, :mod:`.heldout`, a generator training never uses) and in-distribution
(patches of bank volumes kept out of training). No test or tuning head enters either.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from qsmflow.algorithms.metrics import nrmse_percent
from qsmflow.dl.nsidl import CHI_SCALE_PPM, NSIDL, NSIDLConfig
from qsmflow.files import atomic_write, atomic_write_text, sha256_file

from .augment import CLEAN_FRACTION
from .synthetic import random_head_models, sample_batch
from .v2data import V2Data

TRAIN_SEED_OFFSET = 0
VALIDATION_SEED_OFFSET = 10_000


def masked_l1(prediction, target, mask):
    return (torch.abs(prediction - target) * mask).sum() / mask.sum().clamp(min=1)


def batch_nrmse_percent(prediction: torch.Tensor, batch) -> float:
    """NRMSE (%) of a batch's estimate against its truth, over the whole batch's masks
    (:func:`qsmflow.algorithms.metrics.nrmse_percent`, the one definition)."""
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return nrmse_percent(numpy(prediction), numpy(batch.chi_ppm), numpy(batch.mask) > 0.5)


def validate(model, batches, prefix: str = "") -> dict:
    model.eval()
    nsidl, tkd = [], []
    with torch.no_grad():
        for b in batches:
            chi = model(b.operator, b.field_ppm, b.mask, b.weight, b.phase_scale,
                        noise_sd_ppm=b.noise_sd_ppm)
            nsidl.append(batch_nrmse_percent(chi, b))
            tkd.append(batch_nrmse_percent(b.operator.tkd(b.field_ppm) * b.mask, b))
    model.train()
    return {f"{prefix}nrmse_nsidl_percent": float(np.mean(nsidl)),
            f"{prefix}nrmse_tkd_percent": float(np.mean(tkd))}


def validate_all(model, validation: dict) -> dict:
    """Metrics of every labelled validation set (v1: one set, unprefixed)."""
    out = {}
    for label, batches in validation.items():
        out.update(validate(model, batches, f"{label}_" if label else ""))
    return out


def train(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = NSIDLConfig(n_iterations=args.iterations, width=args.width,
                         shared_prox=not args.per_iteration, noise_input=args.noise_input)
    model = NSIDL(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + TRAIN_SEED_OFFSET)
    log = {"args": vars(args), "config": config.to_dict(), "losses": [], "validation": [],
           "wall_time_s": 0.0}
    step = 0
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log, step = state["log"], state["step"]
        print(f"resumed from step {step}", flush=True)
    # Each start (fresh or resumed) is a segment: its arguments and first step are kept,
    # so that a run whose schedule was changed on resume can be reproduced exactly.
    log.setdefault("segments", []).append({"first_step": step, "args": vars(args)})

    if args.data == "v2":
        print(f"loading the bank {args.bank}...", flush=True)
        data = V2Data(args.bank, seed=args.seed + VALIDATION_SEED_OFFSET,
                      n_validation=args.n_validation, patch=args.patch,
                      clean_fraction=CLEAN_FRACTION if args.noise_input else 0.0)
        draw = lambda: data.sample(rng, batch_size=args.batch_size, patch=args.patch)  # noqa: E731
        validation = data.validation
        log.setdefault("bank", data.describe())
    else:
        print("building head models...", flush=True)
        models = random_head_models(args.seed + TRAIN_SEED_OFFSET, args.n_models)
        val_models = random_head_models(args.seed + VALIDATION_SEED_OFFSET, 2)
        val_rng = np.random.default_rng(args.seed + VALIDATION_SEED_OFFSET)
        validation = {"": [sample_batch(val_models, val_rng, batch_size=2, patch=args.patch)
                           for _ in range(args.n_validation // 2)]}
        draw = lambda: sample_batch(models, rng, batch_size=args.batch_size,  # noqa: E731
                                    patch=args.patch)
    print(f"start: {validate_all(model, validation)}", flush=True)

    started = time.time() - log["wall_time_s"]
    stop_at = min(args.steps, args.stop_after) if args.stop_after else args.steps
    while step < stop_at:
        cosine = 1 + math.cos(math.pi * step / args.steps)
        lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * cosine
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = draw()
        history = model(batch.operator, batch.field_ppm, batch.mask, batch.weight,
                        batch.phase_scale, return_all=True, noise_sd_ppm=batch.noise_sd_ppm)
        # Deep supervision: the last iterate counts fully, earlier ones a little.
        loss = masked_l1(history[-1], batch.chi_ppm, batch.mask) + 0.3 * sum(
            masked_l1(h, batch.chi_ppm, batch.mask) for h in history[:-1]) / len(history)
        loss = loss / CHI_SCALE_PPM
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        log["losses"].append(loss.item())
        if step % args.log_every == 0:
            recent = np.mean(log["losses"][-args.log_every:])
            steps_txt = [round(float(a), 3) for a in torch.exp(model.log_steps.detach())]
            print(f"step {step}/{args.steps} loss {recent:.4f} lr {lr:.2e} "
                  f"alpha {steps_txt} {time.time() - started:.0f}s", flush=True)
        if step % args.checkpoint_every == 0 or step == stop_at:
            metrics = validate_all(model, validation)
            metrics["step"] = step
            log["validation"].append(metrics)
            log["wall_time_s"] = time.time() - started
            print(f"validation {metrics}", flush=True)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                     "log": log, "step": step}
            atomic_write(checkpoint, lambda tmp, state=state: torch.save(state, tmp))

    if step < args.steps:
        print(f"stopped after step {step} as asked (--stop-after)", flush=True)
        return checkpoint
    weights = out / "nsidl.pt"
    final = {"config": config.to_dict(), "state_dict": model.state_dict()}
    atomic_write(weights, lambda tmp: torch.save(final, tmp))
    log["wall_time_s"] = time.time() - started
    log["sha256"] = sha256_file(weights)
    atomic_write_text(out / "training_log.json", json.dumps(log, indent=1))
    print(f"wrote {weights} sha256 {log['sha256']}", flush=True)
    return weights


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qsmflow-train-nsidl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (checkpoint, weights, log)")
    p.add_argument("--steps", type=int, default=1600,
                   help="total steps; the cosine learning-rate schedule spans them")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop (with a checkpoint) after this step; resume later")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--patch", type=int, default=48, help="patch edge in voxels")
    p.add_argument("--iterations", type=int, default=5, help="unrolled PGD iterations K")
    p.add_argument("--width", type=int, default=12, help="U-Net base width")
    p.add_argument("--per-iteration", action="store_true",
                   help="one proximal U-Net per iteration (v2) instead of one shared (v1)")
    p.add_argument("--noise-input", action="store_true",
                   help="the proximal networks also see the field's noise sd (v3); "
                        f"{int(CLEAN_FRACTION * 100)} %% of the v2 patches are then clean (true "
                        "mask; no residual background, edge error or noise)")
    p.add_argument("--data", choices=("v1", "v2"), default="v1",
                   help="v1: MNI head models; v2: the fine-grid bank (--bank)")
    p.add_argument("--bank", default=None,
                   help="bank folder of python -m qsmflow.training.bank (with --data v2)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-min", type=float, default=2e-5)
    p.add_argument("--n-models", type=int, default=6, help="random head models to draw from")
    p.add_argument("--n-validation", type=int, default=16, help="validation patches")
    p.add_argument("--seed", type=int, default=20251125)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--checkpoint-every", type=int, default=100)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.data == "v2") != (args.bank is not None):
        parser.error("--bank goes with --data v2, and --data v2 needs --bank")
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
