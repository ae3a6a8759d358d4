"""How far the ROI means follow the true nucleus means, by the erosion of the ROIs.

    python benchmarks/bench_roi_erosion.py --bids BIDS --out QSMFLOW_OUT --name NAME
        [--erode-mm 0 1 2]

``BIDS`` is a dataset of ``scripts/make_wholehead_phantoms.py`` (it holds the truth in
``derivatives/groundtruth``) and ``QSMFLOW_OUT`` a finished ``qsmflow BIDS OUT participant``
run on it. For each participant, the ROI table is computed again from that run's chi, QSM
mask and registered native-space labels (``space-orig_desc-deepgm_dseg``) through
``qsmflow.analysis.roi.roi_table`` -- the pipeline's own code -- at each erosion, and its
means (y) are regressed on the true nucleus means (x): slope and R^2, the must-show of the
real-heads issue. Two references: the same chi on the *true* labels (what registration
costs), and the registered labels' Dice against the true ones.

Erosion is a default chosen here, so run it on the tuning heads to choose, and on the test
heads only to report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from qsmflow.algorithms.dipole import voxel_size_from_affine  # noqa: E402
from qsmflow.analysis.roi import RegionLabel, roi_table  # noqa: E402
from qsmflow.simulation.wholehead_bids import split_of  # noqa: E402

GENERATOR = ("qsmflow.simulation.wholehead (BrainWeb crisp heads 0.5 mm + Colin27 cavities + "
             "AAL3/SUIT nuclei; continuous dipole kernel and complex GRE signal at 0.5 mm, "
             "reduced in k-space; 3T, 5 echoes 5-25 ms, SNR 100, seed 0)")


def _load(path: Path):
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def _one(folder: Path, pattern: str) -> Path:
    hits = sorted(folder.glob(pattern))
    if len(hits) != 1:
        raise FileNotFoundError(f"expected one {pattern} in {folder}, found {hits}")
    return hits[0]


def _fit(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y)
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    residual = y[ok] - (slope * x[ok] + intercept)
    return {"slope": float(slope), "r2": float(1 - residual.var() / y[ok].var()),
            "n_rois": int(ok.sum())}


def evaluate(bids: Path, out: Path, label: str, erosions_mm) -> dict:
    truth_dir = bids / "derivatives" / "groundtruth" / f"sub-{label}" / "anat"
    chi_true = _load(truth_dir / f"sub-{label}_Chimap.nii.gz")[0].astype(float)
    brain = _load(truth_dir / f"sub-{label}_desc-brain_mask.nii.gz")[0] > 0.5
    true_labels = _load(truth_dir / f"sub-{label}_desc-deepgm_dseg.nii.gz")[0].astype(int)
    anat = out / f"sub-{label}" / "anat"
    chi, affine = _load(_one(anat, "*_Chimap.nii.gz"))
    mask = _load(_one(anat, "*desc-qsm_mask.nii.gz"))[0] > 0.5
    labels = np.rint(_load(_one(anat, "*space-orig_desc-deepgm_dseg.nii.gz"))[0]).astype(int)
    tsv = pd.read_csv(_one(anat, "*space-orig_desc-deepgm_dseg.tsv"), sep="\t")
    regions = [RegionLabel(int(r["index"]), r["roi"], r["hemisphere"])
               for _, r in tsv.iterrows() if isinstance(r.get("roi"), str)]
    voxel = voxel_size_from_affine(affine)
    true_means = [chi_true[(true_labels == r.label_id) & brain].mean() for r in regions]
    result = {"split": split_of(label[:2]), "dice": {}}
    for r in regions:
        a, t = labels == r.label_id, (true_labels == r.label_id) & brain
        result["dice"][f"{r.roi}_{r.hemisphere}"] = float(2 * (a & t).sum() / (a.sum() + t.sum()))
    entities = {"subject": label}
    rows = {}
    for erode_mm in erosions_mm:
        table = roi_table(chi, labels, regions, mask, float(np.prod(voxel)),
                          voxel_size_mm=voxel, entities=entities, erode_mm=erode_mm)
        rows[f"{erode_mm:g} mm"] = {**_fit(true_means, table.mean_ppm),
                                    "min_n_voxels": int(table.n_voxels.min())}
    on_truth = roi_table(chi, true_labels * brain, regions, mask, float(np.prod(voxel)),
                         voxel_size_mm=voxel, entities=entities)
    rows["true labels"] = {**_fit(true_means, on_truth.mean_ppm),
                           "min_n_voxels": int(on_truth.n_voxels.min())}
    result["rows"] = rows
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bids", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="a finished qsmflow output folder")
    p.add_argument("--name", required=True, help="result name (benchmarks/results/NAME.json)")
    p.add_argument("--erode-mm", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    args = p.parse_args(argv)
    participants = sorted(d.name[4:] for d in args.out.glob("sub-*") if d.is_dir())
    heads = {label: evaluate(args.bids, args.out, label, args.erode_mm)
             for label in participants}
    for label, head in heads.items():
        print(f"{label} ({head['split']}):")
        for name, row in head["rows"].items():
            print(f"  {name:12s} slope {row['slope']:.3f}  R2 {row['r2']:.3f}  "
                  f"smallest ROI {row['min_n_voxels']} voxels")
    print(json.dumps({k: h["dice"] for k, h in heads.items()}, indent=1))
    write_result(args.name, {"heads": heads, "erode_mm": args.erode_mm},
                 command=f"python benchmarks/bench_roi_erosion.py --bids {args.bids} --out "
                 f"{args.out} --name {args.name} --erode-mm "
                 + " ".join(f"{e:g}" for e in args.erode_mm), generator=GENERATOR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
