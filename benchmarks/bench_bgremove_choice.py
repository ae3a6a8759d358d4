"""End to end: which background removal gives the best susceptibility?

    python benchmarks/bench_bgremove_choice.py [--inversion nsidl]
    python benchmarks/bench_bgremove_choice.py --bids DIR --name NAME [--choices ...]

(writes ``benchmarks/results/bgremove_choice.json``, or ``NAME.json``)

Runs ``qsmflow`` on a dataset with a ground truth -- by default the example (2
participants, 2 mm, 3 echoes 4-18 ms, 3T; sub-02 oblique); with ``--bids``, any dataset of
``scripts/make_wholehead_phantoms.py``, whose participants.tsv says which split its heads
are from -- once per background removal -- V-SHARP and LBV, each with and without the
dipole-model refinement -- with the phantom's own deep gray matter labels
(``--roi-labels-dir``, so that registration does not blur the comparison), and compares
with the ground truth in ``BIDS/derivatives/groundtruth``:

- chi NRMSE (%) inside the run's output mask, both maps referenced to their mean there;
- deep gray matter ROI means against the truth: slope and r (14 labels);
- the output mask's share of the ground-truth brain mask.

The example's settings are the demo's; the numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
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

EXAMPLES = REPO / "bids_examples"
CHOICES = {
    "V-SHARP": ["--bgremove", "vsharp", "--no-bgremove-refine"],
    "V-SHARP + refinement": ["--bgremove", "vsharp"],
    "LBV": ["--bgremove", "lbv", "--no-bgremove-refine"],
    "LBV + refinement": ["--bgremove", "lbv"],
}


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


def evaluate(out: Path, truth: Path, subject: str) -> dict:
    anat = out / f"sub-{subject}" / "anat"
    chi = _load(anat / f"sub-{subject}_Chimap.nii.gz")
    mask = _load(anat / f"sub-{subject}_desc-qsm_mask.nii.gz") > 0
    truth_anat = truth / f"sub-{subject}" / "anat"
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


def _splits(participants: pd.DataFrame) -> dict:
    """Each head's split (tuning, test, ...), as the phantom dataset records it."""
    column = next((c for c in ("split", "brainweb_split") if c in participants), None)
    return ({} if column is None
            else dict(zip(participants.participant_id, participants[column], strict=True)))


def _generator(bids: Path) -> str:
    description = json.loads((bids / "derivatives" / "groundtruth"
                              / "dataset_description.json").read_text())
    makers = ", ".join(g["Name"] for g in description.get("GeneratedBy", []))
    return f"{makers or 'unknown generator'}: {bids.name} ({description.get('Name', '')})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inversion", default="nsidl")
    parser.add_argument("--bids", help="dataset with derivatives/groundtruth (default: "
                        "bids_examples)")
    parser.add_argument("--name", help="result name (required with --bids)")
    parser.add_argument("--choices", nargs="+", choices=list(CHOICES), default=list(CHOICES))
    args = parser.parse_args(argv)
    if args.bids and not args.name:
        parser.error("--bids needs --name, so that the examples' result is not overwritten")
    bids = Path(args.bids).resolve() if args.bids else EXAMPLES
    truth = bids / "derivatives" / "groundtruth"
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    subjects = [p.removeprefix("sub-") for p in participants.participant_id]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.choices:
            out = Path(tmp) / name.replace(" ", "_").replace("+", "p")
            start = time.perf_counter()
            code = qsmflow_main([str(bids), str(out), "participant", "-w", str(out) + "_work",
                                 "--roi-labels-dir", str(truth), "--inversion",
                                 args.inversion, "--nprocs", "2", "--omp-nthreads", "1",
                                 *CHOICES[name]])
            seconds = time.perf_counter() - start
            if code:
                raise SystemExit(f"{name}: qsmflow exited with {code}")
            for subject in subjects:
                rows.append(dict(method=name, time_s=seconds,
                                 **evaluate(out, truth, subject)))
    print(f"{machine()}; inversion {args.inversion}")
    print("| background removal | subject | chi NRMSE % | DGM slope | DGM r | coverage % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['method']} | sub-{row['subject']} | {row['nrmse_pct']:.1f} | "
              f"{row['dgm_slope']:.3f} | {row['dgm_r']:.3f} | {100 * row['coverage']:.1f} |")
    command = "python benchmarks/bench_bgremove_choice.py" + (
        "" if args.inversion == "nsidl" else f" --inversion {args.inversion}")
    if args.bids:
        command += f" --bids {args.bids} --name {args.name}"
    if args.choices != list(CHOICES):
        command += " --choices " + " ".join(f"'{c}'" for c in args.choices)
    write_result(args.name or "bgremove_choice",
                 dict(inversion=args.inversion, rows=rows,
                      splits=_splits(participants) if args.bids else None),
                 command=command,
                 generator=_generator(bids) if args.bids else BIDS_EXAMPLE_GENERATOR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
