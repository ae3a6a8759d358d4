"""Atlas registration settings against the true deep gray nuclei: Dice and time per setting.

    python benchmarks/bench_registration_settings.py --bids DIR [DIR ...] --name NAME
        [--settings full,default,...] [--threads 2] [--seeds S ...]
    python benchmarks/bench_registration_settings.py --compare STUDY STUDY --name NAME
    python benchmarks/bench_registration_settings.py --pool STUDY:SETTING[:PREFIX] ...
        --name NAME

For every participant of each BIDS dataset with ground-truth labels
(``derivatives/groundtruth/sub-*/anat/*_desc-deepgm_dseg.nii.gz``, as written by
``scripts/make_wholehead_phantoms.py`` and ``scripts/make_bids_examples.py``), the default
atlas template is registered to the brain-masked first-echo magnitude (true brain mask, so
that only the registration differs) with each setting, and its labels are carried to the
native grid as ``RegisterAtlas`` does. Printed and recorded per setting: the ANTs call's
time, and per label the Dice against the truth and its change against ``full``.

Settings (``qsmflow.interfaces.atlas`` holds the default's constants):

* ``full``: SyNRA on the scan's own grid with the interface's stage settings (the
  reference "full settings" of issue 15);
* ``default``: what ``RegisterAtlas`` runs (a 2 mm grid for finer scans);
* ``syn2mm``: as ``default`` without the rigid stage (ANTs ``SyN``: affine, then SyN);
* ``aa2mm``, ``aa2mm_syn``: as ``default`` and ``syn2mm``, with both images smoothed by a
  1 mm Gaussian before the 2 mm grid (anti-aliasing, as ANTs smooths the full setting's
  2 mm level);
* ``flow2mm``: as ``default`` with SyN's update field smoothed by 1.5 voxels, not 3;
* ``full_seed``: ``full`` with another random seed: how much Dice moves between two runs
  of the same setting;
* ``syn_40_10``, ``syn_80_10``, ``syn_40_15``: as ``default`` with fewer SyN iterations at
  2 mm (the level that costs nearly all of SyN's time; 4 mm iterations are cheap);
* ``cropM`` (``crop10``, ...): the 2 mm grid with the fixed image cropped to the box of
  its brain plus M mm (``crop10`` is the default since 2026-12-07);
* ``uncropped``: the 2 mm grid, not cropped (the default before).

With ``--seeds S [S ...]`` every setting runs once per seed (ANTs' sampling and, with two
threads, its reductions differ between runs), and each label's Dice is averaged over the
seeds before it is compared with ``full``; the spread over the seeds is recorded too.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from qsmflow.atlases import atlas_cache_dir, default_atlas  # noqa: E402
from qsmflow.interfaces import atlas as atlas_interface  # noqa: E402
from qsmflow.interfaces.images import load_data, load_mask, save_like  # noqa: E402
from qsmflow.interfaces.template_space import template_labels_to_native  # noqa: E402

SECOND_SEED = 7  # full_seed: the full setting with another seed, for the run-to-run spread
NATIVE_SETTINGS = dict(reg_iterations=atlas_interface.SYN_ITERATIONS,
                       aff_iterations=atlas_interface.AFFINE_ITERATIONS,
                       aff_shrink_factors=atlas_interface.AFFINE_SHRINK_FACTORS,
                       aff_smoothing_sigmas=atlas_interface.AFFINE_SMOOTHING_SIGMAS)


def _setting(ants, name, fixed, moving):
    """(fixed, moving, type_of_transform, keyword arguments) of one named setting."""
    if name == "full":
        return fixed, moving, "SyNRA", NATIVE_SETTINGS
    if name == "default":
        fixed_reg, moving_reg, settings = atlas_interface._registration_grid(ants, fixed, moving)
        return fixed_reg, moving_reg, "SyNRA", settings
    if name.startswith("crop"):  # crop10: the fixed image cropped to its brain + 10 mm
        fixed_reg, moving_reg, settings = atlas_interface._registration_grid(
            ants, fixed, moving, crop_margin_mm=float(name[4:]))
        return fixed_reg, moving_reg, "SyNRA", settings
    # The other settings vary the 2 mm grid of 2026-12-03, which was not cropped.
    fixed_reg, moving_reg, settings = atlas_interface._registration_grid(
        ants, fixed, moving, crop_margin_mm=None)
    if name == "uncropped":  # the default of 2026-12-03..07
        return fixed_reg, moving_reg, "SyNRA", settings
    if name == "syn2mm":
        return fixed_reg, moving_reg, "SyN", settings
    if name in ("aa2mm", "aa2mm_syn"):
        # anti-aliased: smoothed by 1 mm before the 2 mm grid, as ANTs smooths a level
        # of the full setting that it shrinks to 2 mm
        grid = (atlas_interface.REGISTRATION_VOXEL_MM,) * 3
        fixed_aa, moving_aa = (
            ants.resample_image(ants.smooth_image(i, 1.0, sigma_in_physical_coordinates=True),
                                grid, use_voxels=False, interp_type=0)
            for i in (fixed, moving))
        return fixed_aa, moving_aa, "SyNRA" if name == "aa2mm" else "SyN", settings
    if name == "flow2mm":
        return fixed_reg, moving_reg, "SyNRA", dict(settings, flow_sigma=1.5)
    if name.startswith("syn_"):
        coarse, fine = (int(n) for n in name.split("_")[1:])
        return fixed_reg, moving_reg, "SyNRA", dict(settings, reg_iterations=(coarse, fine))
    if name == "full_seed":
        return fixed, moving, "SyNRA", dict(NATIVE_SETTINGS, random_seed=SECOND_SEED)
    raise SystemExit(f"unknown setting {name!r}")


def participants(bids: Path):
    for labels in sorted(glob.glob(str(bids / "derivatives/groundtruth/sub-*/anat/"
                                       "*_desc-deepgm_dseg.nii.gz"))):
        subject = Path(labels).name.split("_")[0]
        mask = labels.replace("_desc-deepgm_dseg", "_desc-brain_mask")
        magnitude = sorted(glob.glob(str(bids / subject / "anat" /
                                         "*echo-1_part-mag_*.nii.gz")))[0]
        yield f"{bids.name}/{subject}", magnitude, mask, labels


def dice_per_label(native: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    return {int(k): float(2 * np.count_nonzero((native == k) & (truth == k))
                          / max(np.count_nonzero(native == k) + np.count_nonzero(truth == k), 1))
            for k in range(1, 15)}


def register(ants, name, magnitude_path, mask_path, atlas, tmp: Path, seed: int):
    magnitude, affine = load_data(magnitude_path)
    mask = load_mask(mask_path)
    fixed = ants.image_read(save_like(magnitude * mask, affine, str(tmp / "fixed.nii")))
    moving = ants.image_read(str(atlas.template))
    fixed_reg, moving_reg, kind, settings = _setting(ants, name, fixed, moving)
    start = time.perf_counter()
    result = ants.registration(fixed_reg, moving_reg, type_of_transform=kind,
                               **dict(dict(random_seed=seed, outprefix=f"{tmp}/ants_"),
                                      **settings))
    seconds = time.perf_counter() - start
    native = template_labels_to_native(str(atlas.labels), fixed, result["fwdtransforms"][-1],
                                       result["fwdtransforms"][0])
    return native * mask, seconds


def summary_rows(results: dict) -> list[dict]:
    """One row per participant and setting: time, mean Dice, and the change against
    ``full`` (mean over the labels, and the label that loses most)."""
    rows = []
    for key, settings in results.items():
        for name, row in settings.items():
            worst = row.get("worst_change_vs_full", {})
            rows.append({"participant": key, "setting": name, "seconds": row["seconds"],
                         "mean_dice": row["mean_dice"],
                         "mean_change": (float(np.mean(list(row["dice_change_vs_full"]
                                                            .values())))
                                         if "dice_change_vs_full" in row else None),
                         "worst_label": next(iter(worst), None),
                         "worst_change": next(iter(worst.values()), None)})
    return rows


def _recorded_participants(study: str) -> dict:
    """``{participant: {setting: row}}`` of a study recorded in benchmarks/results."""
    from common import RESULTS_DIR

    return json.loads((RESULTS_DIR / f"{study}.json").read_text())["results"]["participants"]


def compare_full_runs(first: str, second: str, name: str) -> int:
    """Record how far Dice moves between two runs of ``full`` (two recorded studies, over
    the participants they share)."""
    runs = [_recorded_participants(n) for n in (first, second)]
    rows = []
    for key in [k for k in runs[0] if k in runs[1]]:
        a, b = (r[key]["full"]["dice"] for r in runs)
        change = {label: b[label] - a[label] for label in a}
        largest = max(change, key=lambda label: abs(change[label]))
        rows.append({"participant": key, "mean_change": float(np.mean(list(change.values()))),
                     "largest_label": largest, "largest_change": change[largest]})
        print(f"{key}: mean {rows[-1]['mean_change']:+.4f}, largest {largest} "
              f"{change[largest]:+.3f}")
    write_result(name, {"studies": [first, second], "rows": rows},
                 command="python benchmarks/bench_registration_settings.py --compare "
                 f"{first} {second} --name {name}",
                 generator=f"the participants of {first} and {second}")
    return 0


def pool_heads(items: list[str], name: str) -> int:
    """Each label's Dice change against ``full``, averaged over the heads of the given
    ``STUDY:SETTING[:PREFIX]`` items (the study's participants, or those whose key starts
    with PREFIX): a label that a shortcut loses systematically shows there, where one
    head's change is mostly run-to-run noise."""
    changes = {}
    for item in items:
        study, setting, prefix = (item.split(":") + [""])[:3]
        for key, settings in _recorded_participants(study).items():
            if key.startswith(prefix):
                changes[f"{study}/{key}"] = settings[setting]["dice_change_vs_full"]
    labels = list(next(iter(changes.values())))
    rows = [{"label": label,
             "mean_change": float(np.mean([c[label] for c in changes.values()])),
             "lowest_change": float(min(c[label] for c in changes.values())),
             "highest_change": float(max(c[label] for c in changes.values()))}
            for label in labels]
    for row in rows:
        print(f"{row['label']:24s} mean {row['mean_change']:+.4f}  "
              f"range {row['lowest_change']:+.3f}..{row['highest_change']:+.3f}")
    write_result(name, {"items": items, "heads": list(changes), "rows": rows,
                        "mean_change_all_labels": float(np.mean([r["mean_change"]
                                                                 for r in rows]))},
                 command="python benchmarks/bench_registration_settings.py --pool "
                 + " ".join(items) + f" --name {name}",
                 generator="the participants of " + ", ".join(items))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("STUDY", "STUDY"),
                        help="only compare the `full` rows of two recorded studies")
    parser.add_argument("--pool", nargs="+", metavar="STUDY:SETTING[:PREFIX]",
                        help="only average each label's change against full over the heads "
                        "of recorded studies")
    parser.add_argument("--bids", nargs="+", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--settings", default="full,default,syn2mm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[20251125],
                        help="run every setting once per seed; Dice is averaged over them")
    args = parser.parse_args()
    if args.compare:
        return compare_full_runs(*args.compare, args.name)
    if args.pool:
        return pool_heads(args.pool, args.name)
    if not args.bids:
        parser.error("--bids is required")
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    import ants

    names = args.settings.split(",")
    labels_tsv = np.genfromtxt(str(Path(__file__).resolve().parents[1] / "qsmflow" / "data"
                                   / "deepgm_labels.tsv"), dtype=str, skip_header=1,
                               usecols=1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        atlas = default_atlas(atlas_cache_dir(Path(tmp)))
        for bids in args.bids:
            for key, magnitude, mask, labels in participants(bids.resolve()):
                truth = np.rint(load_data(labels)[0]).astype(int)
                rows = {}
                for name in names:
                    runs = []
                    for seed in args.seeds:
                        native, seconds = register(ants, name, magnitude, mask, atlas,
                                                   Path(tmp), seed)
                        runs.append((dice_per_label(native, truth), seconds))
                        print(f"{key} {name:8s} seed {seed}: {seconds:6.1f} s  mean Dice "
                              f"{np.mean(list(runs[-1][0].values())):.3f}", flush=True)
                    dice = {k: float(np.mean([d[k] for d, _ in runs])) for k in runs[0][0]}
                    rows[name] = {"seconds": float(np.mean([s for _, s in runs])),
                                  "dice": {labels_tsv[k - 1]: d for k, d in dice.items()},
                                  "dice_sd_over_seeds": {
                                      labels_tsv[k - 1]: float(np.std([d[k] for d, _ in runs]))
                                      for k in dice},
                                  "mean_dice": float(np.mean(list(dice.values())))}
                if "full" in rows:
                    for name in names:
                        change = {k: rows[name]["dice"][k] - rows["full"]["dice"][k]
                                  for k in rows["full"]["dice"]}
                        worst = min(change, key=change.get)
                        rows[name]["dice_change_vs_full"] = change
                        rows[name]["worst_change_vs_full"] = {worst: change[worst]}
                        print(f"  {name:8s} vs full: mean {np.mean(list(change.values())):+.3f}"
                              f", worst {worst} {change[worst]:+.3f}")
                results[key] = rows
    write_result(args.name, {"settings": names, "threads": args.threads, "seeds": args.seeds,
                             "rows": summary_rows(results), "participants": results},
                 command="python benchmarks/bench_registration_settings.py "
                 + " ".join(sys.argv[1:]),
                 generator="qsmflow.simulation.wholehead (BrainWeb heads, see each dataset's "
                 "participants.tsv): " + ", ".join(str(b) for b in args.bids))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
