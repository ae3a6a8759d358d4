"""Write the bundled example dataset ``bids_examples/`` from the whole-head phantom.

Two participants at 3T, 2 mm isotropic, 3 echoes, made by
:func:`qsmflow.simulation.wholehead.simulate` from BrainWeb heads of the *test* split
(so nothing may be tuned on them): sub-01 is subject 18 in the straight pose, sub-02
subject 20 in the oblique pose, whose B0 direction in voxel coordinates is tilted.
Phase is stored as 12-bit scanner units (-4096..4094 in steps of 2 for -pi..pi, int16),
magnitude as uint16, as scanners export them. The ground truth (chi, true brain mask,
local field, deep gray and tissue labels) goes to ``derivatives/groundtruth``.
Generation is deterministic: the anatomy caches and the seeds fix every value (a
regeneration gave the committed files byte for byte).
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmflow import __version__
from qsmflow.bids.nifti import save_nifti

from .anatomy import deepgm_labels
from .wholehead import FLIP_ANGLE_DEG, POSES_DEG, REPETITION_TIME_S, TEST_SUBJECTS, WholeHeadScan
from .wholehead_anatomy import AIR, TISSUE_NAMES


@dataclasses.dataclass(frozen=True)
class ExampleParticipant:
    label: str
    brainweb_subject: str
    pose: str  # a key of POSES_DEG
    seed: int
    sex: str  # assigned for the demo's group level: BrainWeb does not give it
    group: str


PARTICIPANTS = (ExampleParticipant("01", "18", "straight", 1, "F", "control"),
                ExampleParticipant("02", "20", "oblique", 2, "M", "patient"))
VOXEL_SIZE_MM = 2.0
ECHO_TIMES_S = (0.004, 0.012, 0.020)
B0_T = 3.0
SNR = 100.0  # white matter's first-echo magnitude over the noise sd
# Phase as Siemens exports it through dcm2niix: 12 bits (4096 levels), -4096..4094 in
# steps of 2 for -pi..pi.
PHASE_LEVELS = 4096
PHASE_STEP = 2
# The head's 99.9th magnitude percentile (uint16 units). 10 MB for two whole heads at
# 2 mm leaves about 8 bits of range above the noise (sd about 1.5 units): gzip stores
# every 16-bit value's low byte, noise and all, so the range is what costs.
MAGNITUDE_MAX = 255
HEAD_MARGIN_VOX = 3  # air kept around the head (stored as 0)
SLAB_BELOW_NUCLEI_MM = 24.0  # the cerebellum's lower pole lies ~2 cm below the dentate
CHI_RESOLUTION_PPM = 5e-4  # truth chi as int16 with this NIfTI slope: exact to it
FIELD_RESOLUTION_HZ = 0.02  # truth local field as int16 with this slope (+-655 Hz)

for _p in PARTICIPANTS:  # the examples must never be data anything was tuned on
    assert _p.brainweb_subject in TEST_SUBJECTS and _p.pose in POSES_DEG


def crop_to_head(scan: WholeHeadScan, margin_vox: int = HEAD_MARGIN_VOX, *,
                 below_nuclei_mm: float | None = SLAB_BELOW_NUCLEI_MM) -> WholeHeadScan:
    """The scan on the box of its head (tissue other than air) grown by ``margin_vox``,
    with the affine moved to match; the voxels themselves are unchanged.

    With ``below_nuclei_mm`` the box starts that far below the lowest deep gray voxel
    (voxel z), as an axial slab that covers the cerebellum and leaves out the rest of
    the neck.
    """
    box = ndimage.find_objects((scan.tissue != AIR).astype(np.uint8))[0]
    box = [slice(max(s.start - margin_vox, 0), min(s.stop + margin_vox, n))
           for s, n in zip(box, scan.tissue.shape, strict=True)]
    if below_nuclei_mm is not None:
        voxel_z_mm = np.linalg.norm(scan.affine[:3, 2])
        lowest = np.flatnonzero((scan.deepgm > 0).any(axis=(0, 1)))[0]
        start = lowest - int(round(below_nuclei_mm / voxel_z_mm))
        box[2] = slice(max(box[2].start, start), box[2].stop)
    box = tuple(box)
    affine = scan.affine.copy()
    affine[:3, 3] = scan.affine[:3, :3] @ [s.start for s in box] + scan.affine[:3, 3]
    arrays = {f.name: getattr(scan, f.name)[box] for f in dataclasses.fields(scan)
              if isinstance(getattr(scan, f.name), np.ndarray) and f.name != "affine"}
    return dataclasses.replace(scan, affine=affine, **arrays)


def head_support(tissue) -> np.ndarray:
    """The head: voxels whose centre holds tissue, and the cavities it encloses."""
    return ndimage.binary_fill_holes(tissue != AIR)


@contextmanager
def _gzip_level(level: int):
    """nibabel's gzip level for the files written inside (its default, 1, is for speed;
    9 makes the example about 3% smaller)."""
    old = nib.openers.Opener.default_compresslevel
    nib.openers.Opener.default_compresslevel = level
    try:
        yield
    finally:
        nib.openers.Opener.default_compresslevel = old


def simulate_participant(p: ExampleParticipant, heads_dir: Path, cache_dir: Path | None,
                         workers: int = 2) -> WholeHeadScan:
    from .wholehead import simulate
    from .wholehead_anatomy import build_anatomy

    anatomy = build_anatomy(heads_dir, p.brainweb_subject, cache_dir=cache_dir, seed=0)
    scan = simulate(anatomy, b0_t=B0_T, te_s=ECHO_TIMES_S, voxel_size_mm=VOXEL_SIZE_MM,
                    pose_deg=POSES_DEG[p.pose], snr=SNR, seed=p.seed, workers=workers)
    return crop_to_head(scan)


def _json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, default=float) + "\n")


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def acquisition_sidecar(te_s: float, echo: int, part: str) -> dict:
    """The sidecar of one echo's magnitude or phase image.

    Only what is true of the simulation is recorded; the scanner's identity (model,
    serial number, station, institution, coil) does not exist for it, and
    ``docs/bids_validation.md`` lists the validator's warnings about those keys. The phase
    is integer scanner units, so its ``Units`` are ``arbitrary``, as BIDS requires for
    phase that is not in radians.
    """
    sidecar = {
        "EchoTime": te_s, "EchoNumber": echo, "MagneticFieldStrength": B0_T,
        "Manufacturer": "qsmflow whole-head phantom (simulated)",
        "FlipAngle": FLIP_ANGLE_DEG[B0_T], "RepetitionTime": REPETITION_TIME_S[B0_T],
        "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P"],
        "MRAcquisitionType": "3D", "ScanningSequence": "GR", "SequenceVariant": "SP",
        "PulseSequenceType": "simulated multi-echo spoiled gradient echo",
        "SequenceName": "qsmflow_megre_phantom", "NonlinearGradientCorrection": False,
        "PulseSequenceDetails": "signal model of qsmflow.simulation.wholehead.simulate "
        "(0.5 mm complex signal reduced to 2 mm in k-space); no pulse sequence was run",
        "SoftwareVersions": f"qsmflow {__version__} (qsmflow.simulation.example_dataset)",
    }
    if part == "phase":
        sidecar["Units"] = "arbitrary"
    return sidecar


SOURCES = """\
- anatomy: the BrainWeb "20 normal anatomical models" (McConnell Brain Imaging Centre,
  MNI; 0.5 mm crisp tissue labels: scalp, fat, muscle, skull, marrow, dura, vessels, CSF,
  GM, WM). Cite Aubert-Broche B, Griffin M, Pike GB, Evans AC, Collins DL, IEEE Trans Med
  Imaging 2006;25:1410-1416, and Cocosco CA et al., NeuroImage 1997;5:S425. Terms:
  research use with citation.
- air cavities (sinuses, airways): the Colin27 head model of fangq/mcx
  (`colin27_v3.mat`, GPL-3), registered to each head (affine, ANTs).
- deep gray nuclei: the AAL3 atlas (Rolls ET et al., NeuroImage 2020;206:116189; free
  for research, cite it) and the SUIT dentate nuclei (Diedrichsen J et al., NeuroImage
  2011;54:1786-1794; CC BY-NC 3.0, non-commercial use only), carried by an ANTs SyN
  registration of the ICBM 2009a template (Fonov et al., NeuroImage 2011) to each head.
"""
LICENSE = ("research use with citation (BrainWeb); derived in part from Colin27 (GPL-3), "
           "AAL3 and SUIT (CC BY-NC 3.0, non-commercial): see README.md")

RAW_README = """\
# qsmflow example dataset: two simulated whole heads

Made by `qsmflow.simulation.example_dataset` from the whole-head phantom
`qsmflow.simulation.wholehead` (regenerate it with `make bids-examples`, which runs
`scripts/make_bids_examples.py`). It is not a measurement: no person was scanned.

- 2 participants, 3 T, 2 mm isotropic, {n_echoes} echoes ({te_ms} ms), multi-echo GRE
  (`MEGRE`): magnitude (uint16, scaled so that the head's 99.9th percentile is 255; the
  noise is about 1.5 units; a wider range would not fit in 10 MB) and phase (int16
  scanner units: 12 bits, -4096..4094 in steps of 2 for -pi..pi, as dcm2niix writes
  Siemens phase; `Units` "arbitrary"). The whole head, with bright scalp fat, bone,
  marrow, air sinuses and the skull base; the field of view ends 24 mm below the dentate
  nuclei, as an axial slab that covers the cerebellum. Air outside the head (only noise)
  is stored as 0.
- {rows}.
- Physics on a 0.5 mm grid: tissue susceptibility, M0, T1 and R2* from the literature,
  fat with its chemical shift, the field of the continuous dipole kernel, a shim-like
  harmonic background and a smooth phase offset; the complex signal is reduced to 2 mm
  by cropping k-space, then complex Gaussian noise is added (SNR {snr:g} in white matter
  at the first echo). See `qsmflow/simulation/wholehead.py`.
- `derivatives/groundtruth` holds the truth the images were made from, reduced to the
  same grid: chi (ppm, of the brain), the true brain mask (GM + WM + deep gray +
  ventricles), the local field (Hz, the field of the brain's own sources), and the deep
  gray and tissue labels.

Made from:
{sources}
**Do not use this dataset to tune anything.** Its heads are BrainWeb subjects of the
phantom's *test* split (`qsmflow.simulation.wholehead.TEST_SUBJECTS`): they are for
showing and checking results only; settings are chosen on the tuning subjects
(`TUNING_SUBJECTS`). The `sex` and `group` columns are assigned for the demo's group
level; the age is the simulated one, which sets the nuclei's iron.
"""
TRUTH_README = """\
# Ground truth of the qsmflow example dataset

The truth that the images of the raw dataset (`../..`) were simulated from, reduced from
the 0.5 mm simulation grid to each participant's 2 mm grid as the images were (chi and
the local field by cropping k-space; masks and labels by volume fraction > 0.5). They are
not estimated from the images.

- `*_Chimap`: susceptibility of the brain (ppm, relative to water/CSF), 0 outside the
  true brain; its sidecar records the simulated tissue values and pose.
- `*_desc-brain_mask`: the true brain, GM + WM + deep gray + ventricles, without the CSF
  outside the brain's surface.
- `fmap/*_desc-local_fieldmap`: the field (Hz) of the sources inside the true brain,
  inside the true brain (0 elsewhere); `fmap/*_magnitude` is the raw first-echo magnitude
  inside the true brain, the reference that BIDS requires beside a field map.
- `*_desc-deepgm_dseg` (table `desc-deepgm_dseg.tsv`) and `*_desc-tissue_dseg` (table
  `desc-tissue_dseg.tsv`): labels; the tables apply to every participant.

Made from:
{sources}
Do not use it to tune anything (see the raw dataset's README).
"""
DSEG_COLUMNS = {
    "roi": {"Description": "the structure, without its hemisphere"},
    "hemisphere": {"Description": "the hemisphere of the structure",
                   "Levels": {"left": "left hemisphere", "right": "right hemisphere"}},
}
GENERATED_BY = [{"Name": "qsmflow.simulation.example_dataset", "Version": __version__,
                 "CodeURL": "scripts/make_bids_examples.py"}]
SOURCE_DATASETS = [{"URL": "https://brainweb.bic.mni.mcgill.ca/brainweb/anatomic_normal_20"
                           ".html"},
                   {"URL": "https://github.com/fangq/mcx"}]


def _truth_sidecars(p: ExampleParticipant, metadata: dict) -> dict[str, dict]:
    """Sidecars of one participant's ground truth, by path in the participant's folder."""
    reference = f"bids:raw:sub-{p.label}/anat/sub-{p.label}_echo-1_part-mag_MEGRE.nii.gz"
    return {
        f"anat/sub-{p.label}_Chimap.json": {
            "Units": "ppm", "Description": "true susceptibility of the brain (relative to "
            "water/CSF), reduced from 0.5 mm in k-space; 0 outside the true brain",
            "SkullStripped": True, "SpatialReference": reference, "BrainWebSubject":
            p.brainweb_subject, "Pose": p.pose, **metadata},
        f"anat/sub-{p.label}_desc-brain_mask.json": {
            "Type": "Brain", "Description": "true brain: GM + WM + deep gray + ventricles "
            "(volume fraction > 0.5 of each voxel); no CSF outside the brain's surface",
            "SpatialReference": reference},
        f"fmap/sub-{p.label}_desc-local_fieldmap.json": {
            "Units": "Hz", "Description": "field of the sources inside the true brain (chi "
            "of the brain, continuous dipole kernel at 0.5 mm, reduced in k-space), inside "
            "the true brain", "SkullStripped": True, "SpatialReference": reference},
        f"fmap/sub-{p.label}_magnitude.json": {
            "Description": "the raw first-echo magnitude inside the true brain: the "
            "reference image that BIDS requires beside a fieldmap", "SkullStripped": True,
            "Sources": [reference], "SpatialReference": reference},
        f"anat/sub-{p.label}_desc-deepgm_dseg.json": {"SpatialReference": reference},
        f"anat/sub-{p.label}_desc-tissue_dseg.json": {"SpatialReference": reference},
    }


def recorded_metadata(out_dir: Path) -> dict[str, dict]:
    """Each participant's simulation record, read back from its truth Chimap sidecar."""
    truth = Path(out_dir) / "derivatives" / "groundtruth"
    out = {}
    for p in PARTICIPANTS:
        sidecar = json.loads((truth / f"sub-{p.label}" / "anat" /
                              f"sub-{p.label}_Chimap.json").read_text())
        out[p.label] = {k: v for k, v in sidecar.items() if k in SIMULATION_KEYS}
    return out


SIMULATION_KEYS = ("subject", "seed", "pose_deg", "b0_direction_voxel", "snr_wm_echo1",
                   "noise_sd", "fine_voxel_mm", "voxel_size_mm", "age_y", "tissue_chi_ppm",
                   "nucleus_chi_ppm", "shim_removed_ppm", "shim_residual_ppm",
                   "registration")


def write_example_metadata(out_dir: Path, metadata: dict[str, dict]) -> None:
    """Every file of the example except the images: descriptions, READMEs, sidecars and
    tables. ``metadata``: participant label -> the simulation's record (``scan.metadata``,
    or :func:`recorded_metadata` of an existing example). Fast: nothing is simulated."""
    out_dir = Path(out_dir)
    rows = "; ".join(f"sub-{p.label}: BrainWeb subject {p.brainweb_subject}, {p.pose} pose "
                     f"({', '.join(f'{a:g}' for a in POSES_DEG[p.pose])} deg about x, y, z)"
                     for p in PARTICIPANTS)
    _json(out_dir / "dataset_description.json", {
        "Name": "qsmflow example: two simulated whole heads (BrainWeb), multi-echo GRE at 3T",
        "BIDSVersion": "1.10.0", "DatasetType": "raw", "License": LICENSE,
        "Authors": ["qsmflow developers"], "GeneratedBy": GENERATED_BY,
        "SourceDatasets": SOURCE_DATASETS})
    _text(out_dir / "README.md", RAW_README.format(
        n_echoes=len(ECHO_TIMES_S), te_ms=", ".join(f"{1000 * t:g}" for t in ECHO_TIMES_S),
        rows=rows, snr=SNR, sources=SOURCES))
    truth_dir = out_dir / "derivatives" / "groundtruth"
    _json(truth_dir / "dataset_description.json", {
        "Name": "Ground truth of the qsmflow example dataset", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative", "License": LICENSE, "Authors": ["qsmflow developers"],
        "GeneratedBy": GENERATED_BY, "DatasetLinks": {"raw": "../../"},
        "SourceDatasets": SOURCE_DATASETS})
    _text(truth_dir / "README.md", TRUTH_README.format(sources=SOURCES))
    _text(truth_dir / "desc-deepgm_dseg.tsv", "\n".join(
        ["index\tname\troi\themisphere"] + [f"{lab.index}\t{lab.name}\t{lab.roi}\t"
                                            f"{lab.hemisphere}" for lab in deepgm_labels()])
        + "\n")
    _json(truth_dir / "desc-deepgm_dseg.json", {
        "Description": "true deep gray matter labels (AAL3 and SUIT dentate, registered to "
        "each BrainWeb head, kept on its GM/WM)", **DSEG_COLUMNS})
    _text(truth_dir / "desc-tissue_dseg.tsv", "\n".join(
        ["index\tname"] + [f"{i}\t{n}" for i, n in enumerate(TISSUE_NAMES)]) + "\n")
    _json(truth_dir / "desc-tissue_dseg.json", {
        "Description": "BrainWeb tissue labels at each voxel centre, and the registered "
        "Colin27 air cavities (air_cavity)"})
    tsv = ["participant_id\tage\tsex\tgroup\tbrainweb_subject\tpose"]
    for p in PARTICIPANTS:
        anat = out_dir / f"sub-{p.label}" / "anat"
        for n, te in enumerate(ECHO_TIMES_S, start=1):
            for part in ("mag", "phase"):
                _json(anat / f"sub-{p.label}_echo-{n}_part-{part}_MEGRE.json",
                      acquisition_sidecar(te, n, part))
        for name, sidecar in _truth_sidecars(p, metadata[p.label]).items():
            _json(truth_dir / f"sub-{p.label}" / name, sidecar)
        tsv.append(f"sub-{p.label}\t{metadata[p.label]['age_y']:.0f}\t{p.sex}\t{p.group}\t"
                   f"{p.brainweb_subject}\t{p.pose}")
    _text(out_dir / "participants.tsv", "\n".join(tsv) + "\n")
    _json(out_dir / "participants.json", {
        "age": {"Description": "simulated age (sets the iron of the deep gray nuclei)",
                "Units": "year"},
        "sex": {"Description": "sex, assigned for the demo (BrainWeb does not give it)",
                "Levels": {"F": "female", "M": "male"}},
        "group": {"Description": "study group, assigned for the demo",
                  "Levels": {"control": "control", "patient": "patient"}},
        "brainweb_subject": {"Description": "the BrainWeb model the head was made from "
                             "(a test subject of qsmflow.simulation.wholehead)"},
        "pose": {"Description": "head rotation relative to B0",
                 "Levels": {name: f"{', '.join(f'{a:g}' for a in deg)} deg about x, y, z"
                            for name, deg in POSES_DEG.items()}}})


def write_images(out_dir: Path, p: ExampleParticipant, scan: WholeHeadScan) -> None:
    """One participant's echoes (scanner units) and ground-truth images."""
    anat = Path(out_dir) / f"sub-{p.label}" / "anat"
    # Air outside the head holds only noise; zeroing it (as some vendors' phase masks do)
    # keeps the example small without touching any voxel that the pipeline uses.
    support = head_support(scan.tissue)
    scale = MAGNITUDE_MAX / np.percentile(scan.magnitude[..., 0][support], 99.9)
    magnitudes = np.clip(np.round(scan.magnitude * scale), 0, np.iinfo(np.uint16).max)
    for n in range(1, len(scan.te_s) + 1):
        stem = anat / f"sub-{p.label}_echo-{n}_part-"
        magnitude = magnitudes[..., n - 1]
        phase = PHASE_STEP * np.clip(np.round(scan.phase_rad[..., n - 1] / np.pi * PHASE_LEVELS
                                              / 2), -PHASE_LEVELS / 2, PHASE_LEVELS / 2 - 1)
        save_nifti(magnitude * support, scan.affine, Path(f"{stem}mag_MEGRE.nii.gz"),
                   dtype=np.uint16)
        save_nifti(phase * support, scan.affine, Path(f"{stem}phase_MEGRE.nii.gz"),
                   dtype=np.int16)
    stem = Path(out_dir) / "derivatives" / "groundtruth" / f"sub-{p.label}" / "anat" / \
        f"sub-{p.label}"
    brain = scan.brain_mask
    save_nifti(scan.chi_ppm * brain, scan.affine, Path(f"{stem}_Chimap.nii.gz"),
               dtype=np.int16, slope=CHI_RESOLUTION_PPM)
    save_nifti(brain, scan.affine, Path(f"{stem}_desc-brain_mask.nii.gz"), dtype=np.uint8)
    fmap = stem.parent.parent / "fmap" / stem.name
    save_nifti(scan.local_field_hz * brain, scan.affine,
               Path(f"{fmap}_desc-local_fieldmap.nii.gz"), dtype=np.int16,
               slope=FIELD_RESOLUTION_HZ)
    save_nifti(magnitudes[..., 0] * brain, scan.affine, Path(f"{fmap}_magnitude.nii.gz"),
               dtype=np.uint16)
    save_nifti(scan.deepgm * brain, scan.affine, Path(f"{stem}_desc-deepgm_dseg.nii.gz"),
               dtype=np.int16)
    save_nifti(scan.tissue, scan.affine, Path(f"{stem}_desc-tissue_dseg.nii.gz"),
               dtype=np.uint8)


def write_example(out_dir: Path, heads_dir: Path, cache_dir: Path | None) -> None:
    """Simulate and write the whole example dataset (a few minutes per participant)."""
    metadata = {}
    for p in PARTICIPANTS:
        scan = simulate_participant(p, heads_dir, cache_dir)
        with _gzip_level(9):
            write_images(out_dir, p, scan)
        metadata[p.label] = scan.metadata
        del scan
    write_example_metadata(out_dir, metadata)
