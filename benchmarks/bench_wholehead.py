"""The default chain on realistic whole heads it did not simulate, and where its error comes from.

    python benchmarks/bench_wholehead.py [--voxel-size-mm 1] [--work DIR] [--reuse]

(writes ``benchmarks/results/wholehead[_2mm].json``)

Data: ``qsmflow.simulation.wholehead`` (BrainWeb anatomy, Colin27 cavities, atlas nuclei,
continuous-kernel field and complex GRE signal at 0.5 mm reduced in k-space; see that
module), made by ``scripts/make_wholehead_phantoms.py`` for the *test* subjects only
(``TEST_SUBJECTS``: never used to tune anything): BrainWeb 18 straight and BrainWeb 20
oblique (18/-10/6 degrees about x/y/z), 3T, 5 echoes 5-25 ms, SNR 100.

Runs the default ``qsmflow BIDS OUT participant`` and measures, against the truth:

- brain mask: Dice and volume against the true brain (GM + WM + deep gray + ventricles);
- chi: NRMSE (%) and XSIM in the true brain where the run has chi (coverage stated), both
  maps referenced to their mean there; deep gray linearity ``|1 - slope|`` of estimated on
  true chi over the deep gray voxels; the CSV's ROI means against the true nucleus means
  (slope, R^2);
- the error decomposition, swapping in the truth for one stage at a time, cumulatively:
  (1) default; (2) the true brain mask (``--brain-mask-dir``); (3) the true total field in
  the true mask, then the default background removal (LBV + dipole-model refinement with
  NSIDL's first estimate) and inversion;
  (4) the true local field in the true mask, inversion alone (``qsmflow-invert``, NSIDL,
  and TKD for comparison). The differences of consecutive rows are the shares of the
  mask, the field map (echo fit + unwrapping), background removal and inversion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, write_result  # noqa: E402

from qsmflow.algorithms.metrics import nrmse_percent, xsim  # noqa: E402
from qsmflow.simulation.wholehead import POSES_DEG, TEST_SUBJECTS  # noqa: E402

SCANS = ((TEST_SUBJECTS[0], "straight"), (TEST_SUBJECTS[1], "oblique"))
BIN = Path(sys.executable).parent
GENERATOR = ("qsmflow.simulation.wholehead (BrainWeb crisp heads 0.5 mm + Colin27 cavities "
             "(ANTs affine) + AAL3/SUIT nuclei (ANTs SyN); continuous dipole kernel and "
             "complex GRE signal at 0.5 mm, reduced in k-space; 3T, 5 echoes 5-25 ms, SNR "
             "100, seed 0; test subjects only)")


def _load(path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.float64), img.affine


def _one(folder: Path, pattern: str) -> Path:
    hits = sorted(folder.rglob(pattern))  # anat/ and fmap/
    if len(hits) != 1:
        raise FileNotFoundError(f"expected one {pattern} in {folder}, found {hits}")
    return hits[0]


def _run(cmd, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(" ".join(map(str, cmd)) + "\n")
        f.flush()
        subprocess.run(["nice", *map(str, cmd)], check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def chi_metrics(chi, valid, truth: dict) -> dict:
    """NRMSE, XSIM, coverage and deep gray linearity in the true brain where chi is valid."""
    region = truth["brain"] & valid
    est = np.where(region, chi - chi[region].mean(), 0.0)
    ref = np.where(region, truth["chi"] - truth["chi"][region].mean(), 0.0)
    dgm = region & (truth["deepgm"] > 0)
    slope = np.polyfit(ref[dgm], est[dgm], 1)[0]
    return {"nrmse_percent": nrmse_percent(est, ref, region), "xsim": xsim(est, ref, region),
            "coverage": float(region.sum() / truth["brain"].sum()),
            "dgm_linearity": float(abs(1.0 - slope))}


def roi_agreement(csv: Path, truth: dict) -> dict:
    table = pd.read_csv(csv)
    x = [truth["chi"][(truth["deepgm"] == int(i)) & truth["brain"]].mean()
         for i in table["label_id"]]
    y = table["mean_ppm"].to_numpy(float)
    ok = np.isfinite(y)
    slope, intercept = np.polyfit(np.asarray(x)[ok], y[ok], 1)
    r2 = 1 - np.var(y[ok] - (slope * np.asarray(x)[ok] + intercept)) / np.var(y[ok])
    return {"roi_slope": float(slope), "roi_r2": float(r2), "n_rois": int(ok.sum())}


def invert(field_hz: Path, mask: Path, out: Path, te_mean_s: float, method: str, log):
    _run([BIN / "qsmflow-invert", "--field", field_hz, "--mask", mask, "--out", out,
          "--method", method, "--field-units", "hz", "--b0", 3.0, "--te", te_mean_s,
          "--threads", 2, "--force"], log)
    return _load(out)[0]


def bgremove_default(total_hz: Path, mask: Path, out_dir: Path, te_mean_s: float):
    """The pipeline's default background removal on a given field: LBV + refinement, whose
    first estimate is NSIDL (as ``workflows.qsm`` with the default inversion; W = 1)."""
    from qsmflow.algorithms.bgremove import lbv, refine_with_dipole_model
    from qsmflow.algorithms.dipole import b0_direction_from_affine, voxel_size_from_affine
    from qsmflow.inversion import chi_in_field_units

    field, affine = _load(total_hz)
    region = _load(mask)[0] > 0.5
    voxel = voxel_size_from_affine(affine)
    b0_dir = b0_direction_from_affine(affine)
    local, eroded = refine_with_dipole_model(
        lambda f, m: lbv(f, m, voxel), field * region, region, voxel, b0_dir,
        first_estimate=lambda f, m: chi_in_field_units(f, m, voxel, b0_dir, b0_t=3.0,
                                                       te_s=te_mean_s, n_threads=2))
    paths = out_dir / "truetotal_local_hz.nii.gz", out_dir / "truetotal_mask.nii.gz"
    nib.save(nib.Nifti1Image(local.astype(np.float32), affine), paths[0])
    nib.save(nib.Nifti1Image(eroded.astype(np.uint8), affine), paths[1])
    return paths


def evaluate(label: str, bids: Path, outs: dict, work: Path, log: Path) -> dict:
    truth_dir = bids / "derivatives" / "groundtruth" / f"sub-{label}" / "anat"
    chi_true, affine = _load(truth_dir / f"sub-{label}_Chimap.nii.gz")
    truth = {"chi": chi_true, "brain": _load(truth_dir / f"sub-{label}_desc-brain_mask.nii.gz")[0]
             > 0.5, "deepgm": _load(truth_dir / f"sub-{label}_desc-deepgm_dseg.nii.gz")[0]
             .astype(int)}
    voxel_ml = float(np.prod(np.linalg.norm(affine[:3, :3], axis=0))) / 1000.0
    te = [json.loads(p.read_text())["EchoTime"] for p in sorted(
        (bids / f"sub-{label}" / "anat").glob("*part-phase_MEGRE.json"))]
    te_mean = float(np.mean(te))
    result = {"true_brain_ml": float(truth["brain"].sum() * voxel_ml)}
    rows, maps = {}, {}
    for name, out in outs.items():
        anat = out / f"sub-{label}"
        mask = _load(_one(anat, "*desc-brain_mask.nii.gz"))[0] > 0.5
        valid = _load(_one(anat, "*desc-qsm_mask.nii.gz"))[0] > 0.5
        chi = _load(_one(anat, "*_Chimap.nii.gz"))[0]
        local = _load(_one(anat, "*desc-local_fieldmap.nii.gz"))[0]
        local_true = _load(truth_dir / f"sub-{label}_desc-local_fieldmap.nii.gz")[0]
        region = valid & truth["brain"]
        row = chi_metrics(chi, valid, truth)
        row["local_field_nrmse_percent"] = nrmse_percent(
            local - local[region].mean(), local_true - local_true[region].mean(), region)
        row.update(roi_agreement(_one(anat, "*desc-deepgm_chistats.csv"), truth))
        if name == "default":
            inter = np.count_nonzero(mask & truth["brain"])
            result["mask_dice"] = float(2 * inter / (mask.sum() + truth["brain"].sum()))
            result["mask_ml"] = float(mask.sum() * voxel_ml)
            result["mask_volume_error_percent"] = float(
                100 * (mask.sum() - truth["brain"].sum()) / truth["brain"].sum())
        rows[name] = row
        maps[name] = chi, valid
    brain_path = truth_dir / f"sub-{label}_desc-brain_mask.nii.gz"
    local_path, eroded_path = bgremove_default(
        truth_dir / f"sub-{label}_desc-total_fieldmap.nii.gz", brain_path, work, te_mean)
    chi = invert(local_path, eroded_path, work / f"{label}_truetotal_chi.nii.gz", te_mean,
                 "nsidl", log)
    maps["true_total_field"] = chi, _load(eroded_path)[0] > 0.5
    rows["true_total_field"] = chi_metrics(*maps["true_total_field"], truth)
    for method in ("nsidl", "tkd"):
        chi = invert(truth_dir / f"sub-{label}_desc-local_fieldmap.nii.gz", brain_path,
                     work / f"{label}_truelocal_{method}.nii.gz", te_mean, method, log)
        maps[f"true_local_field_{method}"] = chi, truth["brain"]
        rows[f"true_local_field_{method}"] = chi_metrics(chi, truth["brain"], truth)
    # The shares compare the rows on one region: the true brain where every row has chi.
    common = np.logical_and.reduce([valid for _, valid in maps.values()])
    for name, (chi, _) in maps.items():
        on_common = chi_metrics(chi, common, truth)
        rows[name]["nrmse_common_percent"] = on_common["nrmse_percent"]
        rows[name]["xsim_common"] = on_common["xsim"]
    result["common_coverage"] = float((common & truth["brain"]).sum() / truth["brain"].sum())
    e = {k: rows[k]["nrmse_common_percent"] for k in rows}
    result["rows"] = rows
    result["error_shares_nrmse_points"] = {
        "mask": e["default"] - e["true_mask"],
        "field_map": e["true_mask"] - e["true_total_field"],
        "background_removal": e["true_total_field"] - e["true_local_field_nsidl"],
        "inversion": e["true_local_field_nsidl"]}
    result["nrmse_ratio_to_true_local_field"] = e["default"] / e["true_local_field_nsidl"]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voxel-size-mm", type=float, default=1.0)
    p.add_argument("--work", help="working folder (default: a temporary one)")
    p.add_argument("--reuse", action="store_true", help="keep data and runs found in --work")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_wholehead_"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    bids = work / "bids"
    timings = {}
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    with measure() as m:
        if not (args.reuse and (bids / "participants.tsv").is_file()):
            timings["simulate_s"] = _run(
                [sys.executable, REPO / "scripts" / "make_wholehead_phantoms.py", bids,
                 "--voxel-size-mm", args.voxel_size_mm, "--scan",
                 *[f"{s}:{pose}" for s, pose in SCANS]], log)
        outs = {"default": work / "out_default", "true_mask": work / "out_truemask"}
        extra = {"default": [], "true_mask": ["--brain-mask-dir",
                                              bids / "derivatives" / "groundtruth"]}
        for name, out in outs.items():
            if args.reuse and out.is_dir():
                continue
            timings[f"qsmflow_{name}_s"] = _run(
                [BIN / "qsmflow", bids, out, "participant", "-w", work / f"work_{name}",
                 "--nprocs", 2, "--omp-nthreads", 2, *extra[name]], log)
        heads = {f"{s}{pose}": evaluate(f"{s}{pose}", bids, outs, work, log)
                 for s, pose in SCANS}
    results = {"voxel_size_mm": args.voxel_size_mm, "heads": heads, **timings,
               "wall_s": m["wall_s"], "poses_deg": {k: POSES_DEG[k] for _, k in SCANS},
               "note": "child processes' memory is not in peak_rss_gb"}
    for label, h in heads.items():
        print(f"{label}: mask Dice {h['mask_dice']:.3f}, {h['mask_ml']:.0f} ml (true "
              f"{h['true_brain_ml']:.0f} ml)")
        for name, row in h["rows"].items():
            print(f"  {name:26s} chi NRMSE {row['nrmse_percent']:6.1f}%  XSIM "
                  f"{row['xsim']:.3f}  coverage {row['coverage']:.2f}  DGM |1-slope| "
                  f"{row['dgm_linearity']:.2f}" + (f"  ROI slope {row['roi_slope']:.2f} R2 "
                                                   f"{row['roi_r2']:.2f}" if "roi_slope" in
                                                   row else ""))
        shares = {k: round(v, 1) for k, v in h["error_shares_nrmse_points"].items()}
        print(f"  shares (NRMSE points, common region {h['common_coverage']:.2f}):", shares)
    print(f"wall {m['wall_s']:.0f} s, peak RSS {m['peak_rss_gb']:.1f} GB (this process)")
    name = "wholehead" if args.voxel_size_mm == 1.0 else f"wholehead_{args.voxel_size_mm:g}mm"
    write_result(name, {**results, "peak_rss_gb": m["peak_rss_gb"]},
                 command=f"python benchmarks/bench_wholehead.py --voxel-size-mm "
                 f"{args.voxel_size_mm:g}", generator=GENERATOR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
