"""Write whole-head phantom scans as a BIDS dataset with a ground-truth derivative."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qsmflow.bids.nifti import save_nifti
from qsmflow.files import atomic_write_text

from .anatomy import deepgm_labels
from .wholehead import (
    FLIP_ANGLE_DEG,
    REPETITION_TIME_S,
    TEST_SUBJECTS,
    TRAINING_SUBJECTS,
    TUNING_SUBJECTS,
    WholeHeadScan,
)
from .wholehead_anatomy import TISSUE_NAMES

MANUFACTURER = "qsmflow whole-head phantom (simulated)"

README = """# qsmflow whole-head phantom

Simulated multi-echo GRE ({b0_t:g} T, {n_echoes} echoes, TE {te_ms} ms, {voxel:g} mm) of
whole heads, made by `qsmflow.simulation.wholehead` (script `scripts/make_wholehead_phantoms.py`),
independently of the generator that qsmflow's NSIDL network was trained on.

Made from:
- anatomy: the BrainWeb "20 normal anatomical models" (0.5 mm crisp labels; Aubert-Broche et
  al. IEEE TMI 2006; research use with citation), air cavities from the Colin27 head model
  (fangq/mcx, GPL-3; affine ANTs registration), deep gray nuclei from the AAL3 atlas (Rolls et
  al. 2020) and the SUIT dentate (Diedrichsen et al. 2011, CC BY-NC 3.0) carried by an ANTs SyN
  registration of the ICBM 2009a template (nilearn) to a T1-like image of each head;
- physics on the 0.5 mm grid: literature tissue susceptibility, M0, T1, R2*, fat with its
  chemical shift, the continuous dipole kernel, a shim-like harmonic background, a smooth phase
  offset; the complex signal reduced to {voxel:g} mm by cropping k-space; complex Gaussian
  noise (SNR {snr:g} in white matter at the first echo).

Participants (BrainWeb subject, pose, split): {rows}

Subject split (fixed in code): tuning {tuning}; test {test}; training {training}.
Report only on test subjects. Do not redistribute: the BrainWeb and Colin27 terms apply.
`derivatives/groundtruth` holds chi (ppm, of the brain), the true brain mask (GM + WM + deep
gray + ventricles), the local field (Hz, field of the brain's sources) and labels.
"""


def split_of(subject: str) -> str:
    for name, members in (("tuning", TUNING_SUBJECTS), ("test", TEST_SUBJECTS),
                          ("training", TRAINING_SUBJECTS)):
        if subject in members:
            return name
    raise ValueError(f"BrainWeb subject {subject!r} is in no split")


def _json(path: Path, content: dict) -> None:
    atomic_write_text(path, json.dumps(content, indent=2, default=float) + "\n")


def write_scan(out_dir: Path, label: str, scan: WholeHeadScan) -> None:
    """The echoes of one participant and their ground truth."""
    out_dir = Path(out_dir)
    anat = out_dir / f"sub-{label}" / "anat"
    for n, te in enumerate(scan.te_s, start=1):
        for part, data, extra in (("mag", scan.magnitude, {"Units": "arbitrary"}),
                                  ("phase", scan.phase_rad, {"Units": "rad"})):
            stem = anat / f"sub-{label}_echo-{n}_part-{part}_MEGRE"
            save_nifti(data[..., n - 1], scan.affine, Path(f"{stem}.nii.gz"), dtype=np.float32)
            _json(Path(f"{stem}.json"), {
                "EchoTime": te, "EchoNumber": n, "MagneticFieldStrength": scan.b0_t,
                "Manufacturer": MANUFACTURER, "FlipAngle": FLIP_ANGLE_DEG[scan.b0_t],
                "RepetitionTime": REPETITION_TIME_S[scan.b0_t],
                "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P"], **extra})
    truth = out_dir / "derivatives" / "groundtruth" / f"sub-{label}" / "anat"
    stem = truth / f"sub-{label}"
    save_nifti(scan.chi_ppm, scan.affine, Path(f"{stem}_Chimap.nii.gz"), dtype=np.float32)
    _json(Path(f"{stem}_Chimap.json"), {
        "Units": "ppm", "Description": "true susceptibility of the brain (relative to "
        "water/CSF), reduced from 0.5 mm in k-space", **scan.metadata})
    save_nifti(scan.brain_mask, scan.affine, Path(f"{stem}_desc-brain_mask.nii.gz"), dtype=np.uint8)
    _json(Path(f"{stem}_desc-brain_mask.json"), {
        "Type": "Brain", "Description": "GM + WM + deep gray + ventricles (volume fraction "
        "> 0.5 of each voxel); no CSF outside the brain's surface"})
    save_nifti(scan.local_field_hz, scan.affine, Path(f"{stem}_desc-local_fieldmap.nii.gz"),
               dtype=np.float32)
    _json(Path(f"{stem}_desc-local_fieldmap.json"), {
        "Units": "Hz", "Description": "field of the sources inside the true brain "
        "(chi * brain) with the continuous kernel at 0.5 mm, reduced in k-space"})
    save_nifti(scan.total_field_hz, scan.affine, Path(f"{stem}_desc-total_fieldmap.nii.gz"),
               dtype=np.float32)
    _json(Path(f"{stem}_desc-total_fieldmap.json"), {
        "Units": "Hz", "Description": "the whole field (every source, shim included; no phase "
        "offset): the local field plus the background field (continuous kernel at 0.5 mm) "
        "at the voxel centres"})
    save_nifti(scan.deepgm, scan.affine, Path(f"{stem}_desc-deepgm_dseg.nii.gz"), dtype=np.int16)
    save_nifti(scan.tissue, scan.affine, Path(f"{stem}_desc-tissue_dseg.nii.gz"), dtype=np.uint8)


def write_dataset(out_dir: Path, scans: dict) -> None:
    """``scans``: participant label -> (BrainWeb subject, pose name, WholeHeadScan)."""
    out_dir = Path(out_dir)
    first = next(iter(scans.values()))[2]
    for label, (_, _, scan) in scans.items():
        write_scan(out_dir, label, scan)
    rows = ["participant_id\tage\tbrainweb_subject\tpose\tsplit"] + [
        f"sub-{label}\t{scan.metadata['age_y']:.0f}\t{subject}\t{pose}\t{split_of(subject)}"
        for label, (subject, pose, scan) in scans.items()]
    atomic_write_text(out_dir / "participants.tsv", "\n".join(rows) + "\n")
    _json(out_dir / "participants.json", {
        "age": {"Description": "simulated age (drives the nuclei's iron)", "Units": "year"},
        "brainweb_subject": {"Description": "BrainWeb model the head was made from"},
        "pose": {"Description": "head rotation relative to B0 (see the Chimap sidecar)"},
        "split": {"Description": "tuning, test or training (qsmflow.simulation.wholehead)"}})
    generated = [{"Name": "qsmflow.simulation.wholehead",
                  "CodeURL": "scripts/make_wholehead_phantoms.py"}]
    _json(out_dir / "dataset_description.json", {
        "Name": "qsmflow whole-head phantom: BrainWeb heads, multi-echo GRE",
        "BIDSVersion": "1.9.0", "DatasetType": "raw", "GeneratedBy": generated,
        "License": "research use only (BrainWeb, Colin27 terms)"})
    text = README.format(
        b0_t=first.b0_t, n_echoes=len(first.te_s),
        te_ms=", ".join(f"{1000 * t:g}" for t in first.te_s),
        voxel=first.metadata["voxel_size_mm"], snr=first.metadata["snr_wm_echo1"],
        rows="; ".join(f"sub-{k} = BrainWeb {s}, {p}" for k, (s, p, _) in scans.items()),
        tuning=", ".join(TUNING_SUBJECTS), test=", ".join(TEST_SUBJECTS),
        training=", ".join(TRAINING_SUBJECTS))
    atomic_write_text(out_dir / "README", text)
    truth = out_dir / "derivatives" / "groundtruth"
    _json(truth / "dataset_description.json", {
        "Name": "Ground truth of the qsmflow whole-head phantom", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative", "GeneratedBy": generated})
    atomic_write_text(truth / "README", text)
    atomic_write_text(truth / "desc-deepgm_dseg.tsv", "\n".join(
        ["index\tname\troi\themisphere"] + [f"{lab.index}\t{lab.name}\t{lab.roi}\t"
                                            f"{lab.hemisphere}" for lab in deepgm_labels()])
        + "\n")
    atomic_write_text(truth / "desc-tissue_dseg.tsv", "\n".join(
        ["index\tname"] + [f"{i}\t{n}" for i, n in enumerate(TISSUE_NAMES)]) + "\n")
