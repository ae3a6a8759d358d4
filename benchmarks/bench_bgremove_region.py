"""Experiment: background removal on the intracranial mask instead of the brain mask.

    python benchmarks/bench_bgremove_region.py --bids BIDS [--participants 04straight ...]
        [--name bgremove_region_tuning]

LBV (with the dipole-model refinement) assumes that the local field is zero on the mask's
surface; the field of the brain's own sources there (the cortex against the CSF) reaches
the interior as a harmonic field, is removed with the background, and lowers the deep gray
matter contrast (issue 12: DGM slope 0.85-0.93). The CSF between the brain and the skull has
a reliable phase, so a larger region -- deepbet's intracranial mask, which the default brain
mask trims by R2* -- moves that surface away from the cortex. This measures whether that
helps: the pipeline's own functions (deepbet, echo fit, reliable-phase mask, Laplacian
unwrapping, LBV + refinement, inversion) on the brain mask and on the intracranial mask,
chi scored in the true brain (NRMSE, DGM linearity |1 - slope|, ROI slope on the true
nuclei). Tuning heads only: it decides a default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_roi_erosion import GENERATOR  # noqa: E402
from bench_wholehead import chi_metrics  # noqa: E402
from common import write_result  # noqa: E402

from qsmflow.algorithms.bgremove import lbv, refine_with_dipole_model  # noqa: E402
from qsmflow.algorithms.brain_extraction import r2star_loglinear, remove_outer_csf  # noqa: E402
from qsmflow.algorithms.dipole import b0_direction_from_affine, voxel_size_from_affine  # noqa: E402
from qsmflow.algorithms.echo_combination import data_weight_from_noise, fit_echo_phase  # noqa: E402
from qsmflow.algorithms.metrics import nrmse_percent  # noqa: E402
from qsmflow.algorithms.unwrap import laplacian_unwrap, reliable_phase_mask  # noqa: E402
from qsmflow.constants import GYROMAGNETIC_RATIO_HZ_PER_T, PPM  # noqa: E402
from qsmflow.interfaces.brainmask import deepbet_native  # noqa: E402
from qsmflow.inversion import invert_local_field  # noqa: E402


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def _echoes(anat: Path, label: str):
    import json

    mags, phases, te = [], [], []
    for sidecar in sorted(anat.glob(f"sub-{label}_echo-*_part-mag_MEGRE.json"),
                          key=lambda p: json.loads(p.read_text())["EchoTime"]):
        te.append(json.loads(sidecar.read_text())["EchoTime"])
        mags.append(_load(sidecar.with_suffix(".nii.gz"))[0].astype(np.float32))
        phase_path = Path(str(sidecar).replace("part-mag", "part-phase")).with_suffix(".nii.gz")
        phases.append(_load(phase_path)[0].astype(np.float32))
    return np.stack(mags, -1), np.stack(phases, -1), te


def evaluate(bids: Path, label: str, methods) -> dict:
    truth_dir = bids / "derivatives" / "groundtruth" / f"sub-{label}" / "anat"
    chi_true, affine = _load(truth_dir / f"sub-{label}_Chimap.nii.gz")
    truth = {"chi": chi_true.astype(float),
             "brain": _load(truth_dir / f"sub-{label}_desc-brain_mask.nii.gz")[0] > 0.5,
             "deepgm": _load(truth_dir / f"sub-{label}_desc-deepgm_dseg.nii.gz")[0].astype(int)}
    local_true = _load(truth_dir / f"sub-{label}_desc-local_fieldmap.nii.gz")[0].astype(float)
    magnitude, phase, te = _echoes(bids / f"sub-{label}" / "anat", label)
    voxel, b0_dir = voxel_size_from_affine(affine), b0_direction_from_affine(affine)
    b0_t = 3.0
    hz_per_ppm = GYROMAGNETIC_RATIO_HZ_PER_T * b0_t * PPM
    intracranial = deepbet_native(magnitude[..., 0], affine, n_threads=2)
    brain = remove_outer_csf(intracranial, r2star_loglinear(magnitude, te, intracranial), voxel,
                             first_echo=magnitude[..., 0])
    result = {}
    for region_name, region in (("brain mask", brain), ("intracranial mask", intracranial)):
        fit = fit_echo_phase(magnitude, phase, te, region)
        reliable, _ = reliable_phase_mask(fit.wrapped_phase_rad, region)
        field_hz = laplacian_unwrap(fit.wrapped_phase_rad, voxel, mask=reliable) / (
            2 * np.pi * fit.reference_dte_s)
        field_hz = (field_hz - np.median(field_hz[reliable])) * reliable
        local_hz, eroded = refine_with_dipole_model(lambda f, m: lbv(f, m, voxel), field_hz,
                                                    reliable, voxel, b0_dir)
        scored = eroded & truth["brain"]
        row = {"region_ml": float(region.sum() * np.prod(voxel) / 1000),
               "local_field_nrmse_percent": nrmse_percent(
                   local_hz - local_hz[scored].mean(),
                   local_true - local_true[scored].mean(), scored)}
        weight = data_weight_from_noise(fit.noise_std_hz, region)
        for method in methods:
            chi = invert_local_field(local_hz / hz_per_ppm, eroded, voxel, b0_dir,
                                     method=method, b0_t=b0_t, te_s=float(np.mean(te)),
                                     weight=weight, n_threads=2).chi_ppm
            metrics = chi_metrics(chi, eroded, truth)
            labels = [i for i in np.unique(truth["deepgm"]) if i > 0]
            x = [truth["chi"][(truth["deepgm"] == i) & scored].mean() for i in labels]
            y = [chi[(truth["deepgm"] == i) & scored].mean() for i in labels]
            metrics["roi_slope_true_labels"] = float(np.polyfit(x, y, 1)[0])
            row[method] = metrics
        result[region_name] = row
        print(label, region_name, row, flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bids", required=True, type=Path)
    p.add_argument("--participants", nargs="+", default=["04straight", "05oblique"])
    p.add_argument("--methods", nargs="+", default=["tkd", "nsidl"])
    p.add_argument("--name", default="bgremove_region_tuning")
    args = p.parse_args(argv)
    heads = {label: evaluate(args.bids, label, args.methods) for label in args.participants}
    write_result(args.name, {"heads": heads},
                 command=f"python benchmarks/bench_bgremove_region.py --bids {args.bids} "
                 f"--participants {' '.join(args.participants)} --name {args.name}",
                 generator=GENERATOR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
