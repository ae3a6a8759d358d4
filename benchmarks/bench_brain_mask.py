"""Brain extraction on whole-head GRE magnitudes: Dice, volume, time and memory per candidate.

    python benchmarks/bench_brain_mask.py [--work DIR] [--candidates ...] [--scans ...]

(writes ``benchmarks/results/brain_mask.json``)

Data: ``qsmflow.simulation.wholehead`` (BrainWeb anatomy with Colin27 cavities and atlas
nuclei; complex 5-echo GRE at 3T simulated at 0.5 mm and reduced to 1 mm in k-space, SNR
100, seed 0). Tuning heads (``TUNING_SUBJECTS``, the mask's constants may be chosen on
them): 04 straight, 05 oblique. Test heads (``TEST_SUBJECTS``, never tuned on): 18
straight, 20 oblique, 38 straight. The truth is the phantom's true brain (GM + WM + deep
gray + ventricles, without the CSF outside the brain's surface), reduced by volume
fraction. Candidates:

- ``deepbet``: qsmflow's default, deepbet's mask with the CSF rim removed by R2*;
- ``deepbet-intracranial``: deepbet's mask as it is;
- ``threshold``: the former default (bias-corrected Otsu threshold, morphology);
- ``brainextractor``: BET in Python (brainextractor 0.3.0; skipped when not installed: it
  is not a qsmflow dependency);
- ``template-affine``: the ICBM 2009a template's brain carried to the magnitude by an
  ANTs affine registration of the template T1 (the fast affine stage of the pipeline's
  atlas registration; its SyN stage alone takes longer than the mask's time budget).

Wall time, CPU time and peak RSS come from ``common.measure`` around each candidate; the
machine is shared, so CPU time is the steadier number.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, write_result  # noqa: E402

from qsmflow.algorithms.brain_extraction import MASK_METHODS  # noqa: E402
from qsmflow.simulation.wholehead import (  # noqa: E402
    POSES_DEG,
    TEST_SUBJECTS,
    TUNING_SUBJECTS,
)

HEADS_DIR = REPO.parent / "shared" / "data" / "heads"
SCANS = ((TUNING_SUBJECTS[0], "straight"), (TUNING_SUBJECTS[1], "oblique"),
         (TEST_SUBJECTS[0], "straight"), (TEST_SUBJECTS[1], "oblique"),
         (TEST_SUBJECTS[2], "straight"))
CANDIDATES = (*MASK_METHODS, "brainextractor", "template-affine")
GENERATOR = ("qsmflow.simulation.wholehead (BrainWeb crisp heads 0.5 mm + Colin27 cavities "
             "+ AAL3/SUIT nuclei; complex 5-echo GRE, 3T, TE 5-25 ms, simulated at 0.5 mm "
             "and reduced to 1 mm in k-space; SNR 100, seed 0)")
N_THREADS = 2


def load_scan(work: Path, subject: str, pose: str) -> dict:
    """The 1 mm scan of one head (simulated once, then read from ``work``)."""
    from qsmflow.simulation.wholehead import simulate
    from qsmflow.simulation.wholehead_anatomy import build_anatomy

    path = work / f"scan_{subject}_{pose}.npz"
    if not path.is_file():
        anatomy = build_anatomy(HEADS_DIR, subject,
                                cache_dir=Path.home() / ".cache" / "qsmflow")
        scan = simulate(anatomy, voxel_size_mm=1.0, pose_deg=POSES_DEG[pose], seed=0)
        np.savez(path, magnitude=scan.magnitude, affine=scan.affine,
                 brain=scan.brain_mask, te_s=np.asarray(scan.te_s))
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def brainextractor_mask(magnitude, affine):
    import nibabel as nib
    from brainextractor import BrainExtractor

    extractor = BrainExtractor(nib.Nifti1Image(magnitude[..., 0], affine))
    extractor.run()
    return extractor.compute_mask().astype(bool)


def template_affine_mask(magnitude, affine, cache: Path):
    import ants
    import nibabel as nib

    from qsmflow.atlases import default_atlas
    from qsmflow.interfaces.atlas import (
        AFFINE_ITERATIONS,
        AFFINE_SHRINK_FACTORS,
        AFFINE_SMOOTHING_SIGMAS,
    )

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(N_THREADS)
    atlas = default_atlas(cache)
    fixed_path = cache / "fixed.nii.gz"
    nib.save(nib.Nifti1Image(magnitude[..., 0], affine), fixed_path)
    fixed, moving = ants.image_read(str(fixed_path)), ants.image_read(str(atlas.template))
    result = ants.registration(fixed, moving, type_of_transform="Affine",
                               aff_iterations=AFFINE_ITERATIONS,
                               aff_shrink_factors=AFFINE_SHRINK_FACTORS,
                               aff_smoothing_sigmas=AFFINE_SMOOTHING_SIGMAS,
                               random_seed=20251125, outprefix=str(cache / "ants_"))
    brain = moving.new_image_like((moving.numpy() > 0).astype(np.float32))
    warped = ants.apply_transforms(fixed, brain, result["fwdtransforms"],
                                   interpolator="linear")
    return warped.numpy() > 0.5


def run_candidate(name, scan, work):
    from qsmflow.interfaces.brainmask import compute_brain_mask

    if name in MASK_METHODS:
        return compute_brain_mask(scan["magnitude"], scan["affine"], method=name,
                                  te_s=scan["te_s"].tolist(), n_threads=N_THREADS)
    if name == "brainextractor":
        return brainextractor_mask(scan["magnitude"], scan["affine"])
    return template_affine_mask(scan["magnitude"], scan["affine"], work)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "qsmflow" /
                                              "bench_brain_mask"))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES),
                        choices=CANDIDATES)
    parser.add_argument("--scans", nargs="+", metavar="SUBJECT:POSE",
                        default=[f"{s}:{p}" for s, p in SCANS])
    parser.add_argument("--result-name", default="brain_mask",
                        help="benchmarks/results/<name>.json (default: brain_mask)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(N_THREADS)
    rows = []
    for item in args.scans:
        subject, pose = item.split(":")
        split = "tuning" if subject in TUNING_SUBJECTS else (
            "test" if subject in TEST_SUBJECTS else "other")
        scan = load_scan(work, subject, pose)
        truth = scan["brain"].astype(bool)
        voxel_ml = float(abs(np.linalg.det(scan["affine"][:3, :3]))) / 1000.0
        for name in args.candidates:
            if name == "brainextractor":
                try:
                    import brainextractor  # noqa: F401
                except ImportError:
                    print(f"{name}: not installed, skipped", flush=True)
                    continue
            cpu = time.process_time()
            with measure() as cost:
                mask = run_candidate(name, scan, work)
            cpu = time.process_time() - cpu
            dice = 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum())
            row = {"subject": subject, "pose": pose, "split": split, "candidate": name,
                   "dice": float(dice), "volume_ml": float(mask.sum() * voxel_ml),
                   "true_volume_ml": float(truth.sum() * voxel_ml),
                   "volume_ratio": float(mask.sum() / truth.sum()),
                   "wall_s": cost["wall_s"], "cpu_s": cpu, "peak_rss_gb": cost["peak_rss_gb"]}
            rows.append(row)
            print(f"{split:6s} {subject} {pose:8s} {name:21s} Dice {dice:.4f}  "
                  f"{row['volume_ml']:6.0f} ml / {row['true_volume_ml']:6.0f} ml "
                  f"({100 * (row['volume_ratio'] - 1):+5.1f}%)  wall {cost['wall_s']:6.1f} s "
                  f"cpu {cpu:6.1f} s  peak {cost['peak_rss_gb']:.2f} GB", flush=True)
    command = "python benchmarks/bench_brain_mask.py " + " ".join(argv or sys.argv[1:])
    path = write_result(args.result_name, {"threads": N_THREADS, "rows": rows},
                        command=command.strip(), generator=GENERATOR)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
