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

import numpy as np
from scipy import ndimage

from qsmflow import __version__
from qsmflow.algorithms.dipole import b0_direction_from_affine
from qsmflow.bids.nifti import save_nifti

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


# The true chi is stored as int16 with a NIfTI slope: exact to this, and small on disk.
CHI_RESOLUTION_PPM = 1e-4


def _json(path: Path, content: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def _text(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def acquisition_sidecar(te_s: float, echo: int, part: str) -> dict:
    """The sidecar of one echo's magnitude or phase image.

    Only what is true of the simulation is recorded; the scanner's identity (model,
    serial number, station, institution, coil) does not exist for it, and
    ``docs/bids_validation.md`` lists the validator's warnings about those keys. The phase
    is integer scanner units (-4096..4095 for -pi..pi), so its ``Units`` are
    ``arbitrary``, as BIDS requires for phase that is not in radians.
    """
    sidecar = {
        "EchoTime": te_s, "EchoNumber": echo, "MagneticFieldStrength": B0_T,
        "Manufacturer": "qsmflow phantom", "FlipAngle": 15, "RepetitionTime": 0.025,
        "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P"],
        "MRAcquisitionType": "3D", "ScanningSequence": "GR", "SequenceVariant": "SP",
        "PulseSequenceType": "simulated multi-echo spoiled gradient echo",
        "SequenceName": "qsmflow_megre_phantom", "NonlinearGradientCorrection": False,
        "PulseSequenceDetails": "signal model of qsmflow.simulation.phantom.acquire; no "
        "pulse sequence was run",
        "SoftwareVersions": f"qsmflow {__version__} (qsmflow.simulation.bids_example)",
    }
    if part == "phase":
        sidecar["Units"] = "arbitrary"
    return sidecar


RAW_README = """\
# qsmflow example dataset

A numerical head phantom, made by `qsmflow.simulation.bids_example` (regenerate it with
`make bids-examples`, which runs `scripts/make_bids_examples.py`). It is not a
measurement: no person was scanned.

- 2 participants, 3 T, 2 mm isotropic, 3 echoes (4, 11, 18 ms), multi-echo GRE
  (`MEGRE`), magnitude (uint16) and phase (int16 scanner units, -4096..4095 for -pi..pi,
  `Units` "arbitrary").
- The anatomy is the ICBM 2009a nonlinear symmetric MNI152 template (Fonov et al.,
  NeuroImage 2011) with AAL3 deep gray matter labels (Rolls et al., NeuroImage 2020);
  each participant has its own head pose, and sub-02 is acquired on an oblique grid.
- `derivatives/groundtruth` holds the susceptibility (ppm), brain mask and deep gray
  matter labels that the images were simulated from.
"""
TRUTH_README = """\
# Ground truth of the qsmflow example phantom

The susceptibility map (`Chimap`, ppm), brain mask and deep gray matter labels that the
images of the raw dataset (`../..`) were simulated from, on each participant's acquisition
grid. They are not estimated from the images: they are the simulation's input. The label
table `desc-deepgm_dseg.tsv` applies to every participant's `desc-deepgm_dseg` image.
"""
DSEG_COLUMNS = {
    "roi": {"Description": "the structure, without its hemisphere"},
    "hemisphere": {"Description": "the hemisphere of the structure",
                   "Levels": {"left": "left hemisphere", "right": "right hemisphere"}},
}
MNI_TEMPLATE_URL = "https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009"


def _truth_sidecars(p: ExampleParticipant) -> dict[str, dict]:
    """Sidecars of one participant's ground truth, by file name."""
    affine = acquisition_affine(p.grid_rotation_deg)
    reference = f"bids:raw:sub-{p.label}/anat/sub-{p.label}_echo-1_part-mag_MEGRE.nii.gz"
    return {
        f"sub-{p.label}_Chimap.json": {
            "Units": "ppm", "Description": "true magnetic susceptibility of the phantom "
            "(SI, volume), zero outside the brain mask", "SkullStripped": True,
            "SpatialReference": reference,
            "B0DirectionVoxel": b0_direction_from_affine(affine).tolist(),
            "HeadRotationDeg": list(p.head_rotation_deg),
            "HeadShiftMm": list(p.head_shift_mm),
            "GridRotationDeg": list(p.grid_rotation_deg)},
        f"sub-{p.label}_desc-brain_mask.json": {
            "Type": "Brain", "Description": "true brain mask of the phantom",
            "SpatialReference": reference},
        f"sub-{p.label}_desc-deepgm_dseg.json": {"SpatialReference": reference},
    }


def write_example_metadata(out_dir: Path) -> None:
    """Every file of the example except the images: descriptions, READMEs, sidecars and
    tables. Deterministic, and fast (no phantom is built)."""
    out_dir = Path(out_dir)
    _json(out_dir / "dataset_description.json", {
        "Name": "qsmflow example: MNI152-based numerical head phantom, multi-echo GRE at 3T",
        "BIDSVersion": "1.10.0", "DatasetType": "raw", "License": "CC0",
        "Authors": ["qsmflow developers"],
        "GeneratedBy": [{"Name": "qsmflow.simulation.bids_example", "Version": __version__,
                         "CodeURL": "scripts/make_bids_examples.py"}],
        "SourceDatasets": [{"URL": MNI_TEMPLATE_URL}]})
    _text(out_dir / "README.md", RAW_README)
    truth_dir = out_dir / "derivatives" / "groundtruth"
    _json(truth_dir / "dataset_description.json", {
        "Name": "Ground truth of the qsmflow example phantom", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative", "License": "CC0", "Authors": ["qsmflow developers"],
        "GeneratedBy": [{"Name": "qsmflow.simulation.bids_example", "Version": __version__,
                         "CodeURL": "scripts/make_bids_examples.py"}],
        "DatasetLinks": {"raw": "../../"}, "SourceDatasets": [{"URL": MNI_TEMPLATE_URL}]})
    _text(truth_dir / "README.md", TRUTH_README)
    labels_tsv = ["index\tname\troi\themisphere"] + [
        f"{lab.index}\t{lab.name}\t{lab.roi}\t{lab.hemisphere}" for lab in deepgm_labels()]
    _text(truth_dir / "desc-deepgm_dseg.tsv", "\n".join(labels_tsv) + "\n")
    _json(truth_dir / "desc-deepgm_dseg.json", {
        "Description": "true deep gray matter labels of the phantom (AAL3 structures "
        "carried into each participant's pose)", **DSEG_COLUMNS})
    rows = ["participant_id\tage\tsex\tgroup"]
    for p in PARTICIPANTS:
        anat = out_dir / f"sub-{p.label}" / "anat"
        for n, te in enumerate(ECHO_TIMES_S, start=1):
            for part in ("mag", "phase"):
                _json(anat / f"sub-{p.label}_echo-{n}_part-{part}_MEGRE.json",
                      acquisition_sidecar(te, n, part))
        for name, sidecar in _truth_sidecars(p).items():
            _json(truth_dir / f"sub-{p.label}" / "anat" / name, sidecar)
        rows.append(f"sub-{p.label}\t{p.age}\t{p.sex}\t{p.group}")
    _text(out_dir / "participants.tsv", "\n".join(rows) + "\n")
    _json(out_dir / "participants.json", {
        "age": {"Description": "age of the simulated participant", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
        "group": {"Description": "study group",
                  "Levels": {"control": "control", "patient": "patient"}}})


def write_bids_example(out_dir: Path, *, seed: int = 2025) -> None:
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    model = build_head_model(rng, n_veins=25)
    write_example_metadata(out_dir)
    truth_dir = out_dir / "derivatives" / "groundtruth"
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
        for n, _te in enumerate(ECHO_TIMES_S, start=1):
            stem = anat / f"sub-{p.label}_echo-{n}_part-"
            magnitude = np.clip(np.round(acq.magnitude[..., n - 1] * magnitude_scale), 0, 65535)
            phase = np.clip(np.round(acq.phase_rad[..., n - 1] / np.pi * SIEMENS_PHASE_MAX),
                            -SIEMENS_PHASE_MAX, SIEMENS_PHASE_MAX - 1)
            save_nifti(magnitude * support, affine, Path(f"{stem}mag_MEGRE.nii.gz"),
                       dtype=np.uint16)
            save_nifti(phase * support, affine, Path(f"{stem}phase_MEGRE.nii.gz"),
                       dtype=np.int16)
        truth = truth_dir / f"sub-{p.label}" / "anat"
        save_nifti(acq.chi_ppm * acq.brain_mask, affine, truth / f"sub-{p.label}_Chimap.nii.gz",
                   dtype=np.int16, slope=CHI_RESOLUTION_PPM)
        save_nifti(acq.brain_mask, affine, truth / f"sub-{p.label}_desc-brain_mask.nii.gz",
                   dtype=np.uint8)
        save_nifti(acq.deepgm * acq.brain_mask, affine,
                   truth / f"sub-{p.label}_desc-deepgm_dseg.nii.gz", dtype=np.int16)
