"""Write the bundled example dataset ``bids_examples/`` from the MNI-based phantom.

Two participants at 3T, 2 mm isotropic, 3 echoes, scanner-unit phase (-4096..4095,
int16), uint16 magnitude. Each participant has a different head pose; sub-02 is
acquired on an oblique grid, so its B0 direction in voxel coordinates is tilted.
The ground truth (susceptibility, brain mask, deep gray matter labels, local field)
goes to ``derivatives/groundtruth``. Generation is deterministic for a given seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmflow.algorithms.dipole import b0_direction_from_affine

from .anatomy import deepgm_labels
from .phantom import acquire, build_head_model, rigid_pose

SIEMENS_PHASE_MAX = 4096
MAGNITUDE_MAX = 4000


@dataclass(frozen=True)
class ExampleParticipant:
    label: str
    head_rotation_deg: tuple
    head_shift_mm: tuple
    grid_rotation_deg: tuple  # obliquity of the acquisition grid relative to the scanner
    age: int
    sex: str
    group: str


PARTICIPANTS = (
    ExampleParticipant("01", (4.0, 0.0, -3.0), (2.0, -3.0, 4.0), (0.0, 0.0, 0.0), 34, "F",
                       "control"),
    ExampleParticipant("02", (-3.0, 5.0, 2.0), (-3.0, 2.0, -2.0), (14.0, 6.0, 0.0), 61, "M",
                       "patient"),
)
GRID_SHAPE = (88, 104, 88)
VOXEL_SIZE_MM = 2.0
ECHO_TIMES_S = (0.004, 0.011, 0.018)
B0_T = 3.0


def acquisition_affine(grid_rotation_deg, shape=GRID_SHAPE, voxel_size_mm=VOXEL_SIZE_MM):
    """Voxel-to-scanner affine of a grid centred on the isocentre, rotated for obliquity."""
    scale = np.diag([voxel_size_mm] * 3 + [1.0])
    centre = np.eye(4)
    centre[:3, 3] = -(np.asarray(shape) - 1) / 2.0
    shift = np.eye(4)
    shift[:3, 3] = (0.0, -18.0, 14.0)  # MNI origin is not the head's centre
    return shift @ rigid_pose(grid_rotation_deg) @ scale @ centre


def _save(array, affine, path: Path, dtype):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def _save_ppm(array, affine, path: Path, resolution_ppm: float = 1e-4):
    """Store ppm values as int16 with a NIfTI slope: exact to 1e-4 ppm, small on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.round(np.asarray(array) / resolution_ppm).astype(np.int16), affine)
    img.header.set_slope_inter(resolution_ppm, 0.0)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def _json(path: Path, content: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_bids_example(out_dir: Path, *, seed: int = 2025) -> None:
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    model = build_head_model(rng, n_veins=25)
    _json(out_dir / "dataset_description.json", {
        "Name": "qsmflow example: MNI152-based numerical head phantom, multi-echo GRE at 3T",
        "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "CC0",
        "GeneratedBy": [{"Name": "qsmflow.simulation.bids_example", "CodeURL":
                         "bids_examples/make_bids_examples.py"}]})
    rows = ["participant_id\tage\tsex\tgroup"]
    truth_dir = out_dir / "derivatives" / "groundtruth"
    _json(truth_dir / "dataset_description.json", {
        "Name": "Ground truth of the qsmflow example phantom", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "qsmflow.simulation.bids_example"}]})
    labels_tsv = ["index\tname\troi\themisphere"] + [
        f"{lab.index}\t{lab.name}\t{lab.roi}\t{lab.hemisphere}" for lab in deepgm_labels()]
    (truth_dir / "desc-deepgm_dseg.tsv").write_text("\n".join(labels_tsv) + "\n")

    for p in PARTICIPANTS:
        affine = acquisition_affine(p.grid_rotation_deg)
        acq = acquire(model, affine, GRID_SHAPE, te_s=ECHO_TIMES_S, b0_t=B0_T,
                      head_pose=rigid_pose(p.head_rotation_deg, p.head_shift_mm), snr=80.0,
                      phase_offset_rad=1.2, rng=rng)
        anat = out_dir / f"sub-{p.label}" / "anat"
        # Air outside the head holds only noise; zeroing it (as some vendors' phase masks
        # do) keeps the example small without touching any voxel that the pipeline uses.
        support = ndimage.binary_dilation(acq.magnitude[..., 0] > 0.15 * np.percentile(
            acq.magnitude[..., 0], 99), iterations=3)
        support = ndimage.binary_fill_holes(support)
        magnitude_scale = MAGNITUDE_MAX / np.percentile(acq.magnitude[..., 0], 99.9)
        for n, te in enumerate(ECHO_TIMES_S, start=1):
            stem = anat / f"sub-{p.label}_echo-{n}_part-"
            magnitude = np.clip(np.round(acq.magnitude[..., n - 1] * magnitude_scale), 0, 65535)
            phase = np.clip(np.round(acq.phase_rad[..., n - 1] / np.pi * SIEMENS_PHASE_MAX),
                            -SIEMENS_PHASE_MAX, SIEMENS_PHASE_MAX - 1)
            _save(magnitude * support, affine, Path(f"{stem}mag_MEGRE.nii.gz"), np.uint16)
            _save(phase * support, affine, Path(f"{stem}phase_MEGRE.nii.gz"), np.int16)
            for part in ("mag", "phase"):
                _json(Path(f"{stem}{part}_MEGRE.json"), {
                    "EchoTime": te, "EchoNumber": n, "MagneticFieldStrength": B0_T,
                    "Manufacturer": "qsmflow phantom", "FlipAngle": 15, "RepetitionTime": 0.025,
                    "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P"]})
        truth = truth_dir / f"sub-{p.label}" / "anat"
        _save_ppm(acq.chi_ppm * acq.brain_mask, affine, truth / f"sub-{p.label}_Chimap.nii.gz")
        _save(acq.brain_mask, affine, truth / f"sub-{p.label}_desc-brain_mask.nii.gz", np.uint8)
        _save(acq.deepgm * acq.brain_mask, affine,
              truth / f"sub-{p.label}_desc-deepgm_dseg.nii.gz", np.int16)
        _json(truth / f"sub-{p.label}_Chimap.json", {
            "Units": "ppm", "B0DirectionVoxel": b0_direction_from_affine(affine).tolist(),
            "HeadRotationDeg": list(p.head_rotation_deg), "HeadShiftMm": list(p.head_shift_mm),
            "GridRotationDeg": list(p.grid_rotation_deg)})
        rows.append(f"sub-{p.label}\t{p.age}\t{p.sex}\t{p.group}")
    (out_dir / "participants.tsv").write_text("\n".join(rows) + "\n")
    _json(out_dir / "participants.json", {
        "age": {"Description": "age of the simulated participant", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
        "group": {"Description": "study group"}})
