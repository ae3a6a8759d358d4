"""End to end on bids_examples: which background removal gives the best susceptibility?

    python benchmarks/bench_bgremove_choice.py [--inversion nsidl]

(writes ``benchmarks/results/bgremove_choice.json``)

Runs ``qsmflow`` on the example (2 participants, 2 mm, 3 echoes 4-18 ms, 3T; sub-02 oblique)
once per background removal -- V-SHARP and LBV, each with and without the dipole-model
refinement -- with the phantom's own deep gray matter labels (``--roi-labels-dir``, so that
registration does not blur the comparison), and compares with the ground truth in
``bids_examples/derivatives/groundtruth``:

- chi NRMSE (%) inside the run's output mask, both maps referenced to their mean there;
- deep gray matter ROI means against the truth: slope and r (14 labels);
- the output mask's share of the ground-truth brain mask.

The example's settings are the demo's; the numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
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
from common import BIDS_EXAMPLE_GENERATOR, machine, write_result  # noqa: E402

from qsmflow.cli.run import main as qsmflow_main  # noqa: E402

BIDS = REPO / "bids_examples"
TRUTH = BIDS / "derivatives" / "groundtruth"
CHOICES = {
    "V-SHARP": ["--bgremove", "vsharp", "--no-bgremove-refine"],
    "V-SHARP + refinement": ["--bgremove", "vsharp"],
    "LBV": ["--bgremove", "lbv", "--no-bgremove-refine"],
    "LBV + refinement": ["--bgremove", "lbv"],
}


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


def evaluate(out: Path, subject: str) -> dict:
    anat = out / f"sub-{subject}" / "anat"
    chi = _load(anat / f"sub-{subject}_Chimap.nii.gz")
    mask = _load(anat / f"sub-{subject}_desc-qsm_mask.nii.gz") > 0
    truth_anat = TRUTH / f"sub-{subject}" / "anat"
    chi_true = _load(truth_anat / f"sub-{subject}_Chimap.nii.gz")
    brain = _load(truth_anat / f"sub-{subject}_desc-brain_mask.nii.gz") > 0
    labels = _load(truth_anat / f"sub-{subject}_desc-deepgm_dseg.nii.gz").astype(int)
    estimate = chi[mask] - chi[mask].mean()
    reference = chi_true[mask] - chi_true[mask].mean()
    table = pd.read_csv(anat / f"sub-{subject}_desc-deepgm_chistats.csv",
                        keep_default_na=False, na_values=[""])
    true_means = [chi_true[(labels == i) & mask].mean() - chi_true[mask].mean()
                  for i in table.label_id]
    return dict(subject=subject,
                nrmse_pct=float(100 * np.linalg.norm(estimate - reference)
                                / np.linalg.norm(reference)),
                dgm_slope=float(np.polyfit(true_means, table.mean_ppm, 1)[0]),
                dgm_r=float(np.corrcoef(true_means, table.mean_ppm)[0, 1]),
                coverage=float((mask & brain).sum() / brain.sum()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inversion", default="nsidl")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in CHOICES.items():
            out = Path(tmp) / name.replace(" ", "_").replace("+", "p")
            start = time.perf_counter()
            code = qsmflow_main([str(BIDS), str(out), "participant", "-w", str(out) + "_work",
                                 "--roi-labels-dir", str(TRUTH), "--inversion",
                                 args.inversion, "--nprocs", "2", "--omp-nthreads", "1",
                                 *options])
            seconds = time.perf_counter() - start
            if code:
                raise SystemExit(f"{name}: qsmflow exited with {code}")
            for subject in ("01", "02"):
                rows.append(dict(method=name, time_s=seconds, **evaluate(out, subject)))
    print(f"{machine()}; inversion {args.inversion}")
    print("| background removal | subject | chi NRMSE % | DGM slope | DGM r | coverage % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['method']} | sub-{row['subject']} | {row['nrmse_pct']:.1f} | "
              f"{row['dgm_slope']:.3f} | {row['dgm_r']:.3f} | {100 * row['coverage']:.1f} |")
    write_result("bgremove_choice", dict(inversion=args.inversion, rows=rows),
                 command="python benchmarks/bench_bgremove_choice.py"
                 + ("" if args.inversion == "nsidl" else f" --inversion {args.inversion}"),
                 generator=BIDS_EXAMPLE_GENERATOR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
