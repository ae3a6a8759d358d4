"""The BIDS-app argument parser."""

from __future__ import annotations

import argparse

from qsmflow import __version__
from qsmflow.algorithms.brain_extraction import DEFAULT_MASK_METHOD, MASK_METHODS
from qsmflow.analysis.roi import ROI_ERODE_MM

from .config import PLUGINS

EPILOG = """exit codes: 0 every run succeeded; 1 some runs failed (see OUTPUT_DIR/logs), or an
unexpected error (its message names the crash report); 2 usage or input error (nothing was
computed); 130 interrupted (run the same command again to resume).

example: qsmflow /data/bids /data/derivatives/qsmflow participant --participant-label 01
"""


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: they pull in torch and pandas, and main() builds the
    # parser inside its error handling, so that even Ctrl-C during startup is one line.
    from qsmflow.analysis.roi import CHI_REFERENCES
    from qsmflow.atlases import OUTPUT_SPACES
    from qsmflow.bids.phase_units import PHASE_SIGNS, PHASE_UNITS
    from qsmflow.inversion import INVERSION_METHODS

    p = argparse.ArgumentParser(
        prog="qsmflow", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantitative susceptibility mapping of multi-echo GRE BIDS datasets.")
    p.add_argument("bids_dir", help="the BIDS dataset (read only)")
    p.add_argument("output_dir", help="where the BIDS Derivatives go")
    p.add_argument("analysis_level", choices=["participant", "group"])
    p.add_argument("--version", action="version", version=f"qsmflow {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more logging (-v adds Nipype's warnings and the tracebacks of "
                   "failed stages, -vv all of Nipype's messages)")

    sel = p.add_argument_group("selection")
    sel.add_argument("--participant-label", nargs="+", metavar="LABEL",
                     help="participants to process (with or without 'sub-')")
    sel.add_argument("--session-label", nargs="+", metavar="LABEL")
    sel.add_argument("--skip-bids-validation", action="store_true",
                     help="do not run the BIDS validator on BIDS_DIR first (by default a "
                     "dataset with validator errors is refused, and a participant with "
                     "errors in its files is left out)")

    run = p.add_argument_group("execution")
    run.add_argument("-w", "--work-dir", help="Nipype working directory; reuse it to resume "
                     "an interrupted run (default: ./work)")
    run.add_argument("--nprocs", type=int, help="processes for the whole run (default: all CPUs)")
    run.add_argument("--omp-nthreads", type=int, help="threads per process, e.g. for the "
                     "inversion (default: half of --nprocs, at most 8, so that the "
                     "registration and the phase chain run side by side; the brain mask, "
                     "which runs before them, then takes twice that)")
    run.add_argument("--mem-gb", type=float, help="memory limit for the MultiProc scheduler")
    run.add_argument("--plugin", choices=PLUGINS, default="MultiProc",
                     help="Nipype execution plugin (default: MultiProc)")
    run.add_argument("--plugin-args", metavar="JSON", help="plugin arguments as a JSON object, "
                     "e.g. '{\"sbatch_args\": \"--time=1:00:00\"}'")

    qsm = p.add_argument_group("QSM")
    qsm.add_argument("--inversion", choices=INVERSION_METHODS, default="nsidl",
                     help="dipole inversion (default: nsidl)")
    qsm.add_argument("--weights", help="NSIDL weights file (default: the shipped weights)")
    qsm.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                     help="device for NSIDL (default: cpu)")
    qsm.add_argument("--b0-tesla", type=float, help="field strength in T where sidecars lack "
                     "MagneticFieldStrength (conflicting values are an error)")
    qsm.add_argument("--phase-units", choices=PHASE_UNITS,
                     help="unit of the part-phase files: radians, Siemens units (-4096..4095 "
                     "or 0..4095), milliradians or degrees (default: from the sidecars, or "
                     "from a range of values that spans nearly all of one unit's range; "
                     "anything else is refused)")
    qsm.add_argument("--phase-sign", type=int, choices=PHASE_SIGNS, default=1,
                     help="-1 for phase that turns the other way (reported for some GE "
                     "data): then veins come out negative in the Chimap (default: 1)")
    qsm.add_argument("--mask-method", choices=MASK_METHODS, default=DEFAULT_MASK_METHOD,
                     help="deepbet: deepbet's brain mask of the first echo, then the CSF "
                     "under the skull removed by its low R2* (needs 2+ echoes); "
                     "deepbet-intracranial: deepbet's mask, CSF rim kept; threshold: "
                     "bias-corrected Otsu threshold, which on a whole head also takes in "
                     f"CSF, scalp muscle and the neck (default: {DEFAULT_MASK_METHOD})")
    qsm.add_argument("--mask-threshold", type=float, help="--mask-method threshold: "
                     "magnitude threshold as a fraction of the robust maximum (default: Otsu)")
    qsm.add_argument("--mask-erode-mm", type=float, default=None,
                     help="erosion of the brain mask in mm (default: 0 for deepbet, "
                     "1.0 for threshold)")
    qsm.add_argument("--brain-mask-dir", help="derivatives folder with your own "
                     "sub-*/[ses-*/]anat/*_desc-brain_mask.nii.gz, used instead of ours")
    qsm.add_argument("--bgremove", choices=["lbv", "vsharp"], default="lbv",
                     help="background field removal (default: lbv, which keeps more of the "
                     "brain at a lower error; see docs/benchmarks.md)")
    qsm.add_argument("--bgremove-refine", action=argparse.BooleanOptionalAction, default=True,
                     help="correct the background removal with the field of a first "
                     "susceptibility estimate (default: on; --no-bgremove-refine for the "
                     "plain method, see docs/benchmarks.md)")
    qsm.add_argument("--lbv-peel-mm", type=float, default=0.0,
                     help="LBV: mm of unreliable boundary peeled off first (default: 0)")
    qsm.add_argument("--vsharp-radii-mm", type=float, nargs="+", help="V-SHARP kernel radii "
                     "in mm (default: 18*min voxel down to 2*max voxel)")
    qsm.add_argument("--vsharp-threshold", type=float, default=0.05,
                     help="V-SHARP truncation threshold (default: 0.05)")

    roi = p.add_argument_group("regions of interest")
    roi.add_argument("--atlas", help="custom atlas label image in its template's space "
                     "(default: AAL3 deep gray matter + SUIT dentate on MNI152 2009a, offline)")
    roi.add_argument("--atlas-labels", help="TSV for --atlas: index, name[, roi, hemisphere]")
    roi.add_argument("--atlas-template", help="T1-like, brain-masked template for --atlas")
    roi.add_argument("--roi-labels-dir", help="instead of an atlas: derivatives folder with "
                     "native-space label images sub-*/[ses-*/]anat/*_desc-deepgm_dseg.nii.gz "
                     "and a desc-deepgm_dseg.tsv (index, name[, roi, hemisphere])")
    roi.add_argument("--chi-reference", choices=CHI_REFERENCES, default="whole_brain",
                     help="susceptibility reference of the ROI tables (default: whole_brain)")
    roi.add_argument("--roi-erode-mm", type=float, default=ROI_ERODE_MM, metavar="MM",
                     help="erode each ROI by a ball of this radius before its statistics, "
                     "against partial volume with the neighbouring tissue at a registered "
                     f"label's edge (default: {ROI_ERODE_MM:g} mm, which erodes nothing on a "
                     "grid of 2 mm voxels; 0: no erosion). A region that erosion empties has "
                     "n_voxels 0 and no statistics")
    roi.add_argument("--output-spaces", nargs="+", metavar="SPACE:res-N",
                     help="also resample chi into these template spaces, through the default "
                     f"atlas's registration (valid: {', '.join(OUTPUT_SPACES)}; default: "
                     "native space only)")

    grp = p.add_argument_group("group level")
    grp.add_argument("--group-by", help="participants.tsv column to compare groups by "
                     "(Welch and Mann-Whitney tests, not adjusted for covariates)")
    grp.add_argument("--group-model", metavar="FORMULA", help="model fitted per ROI and "
                     "hemisphere, e.g. 'chi ~ group + age + sex': chi is each ROI's value, "
                     "the other names are participants.tsv columns, or session (a mixed "
                     "model with a random intercept per participant when sessions repeat)")
    grp.add_argument("--paired-by", choices=["session"], help="paired tests between the "
                     "two sessions of each participant")
    grp.add_argument("--laterality", action="store_true",
                     help="also analyse left - right (ppm) of every ROI")
    grp.add_argument("--exclude-flagged", action="store_true", help="leave out the values "
                     "the quality checks flag (listed in group/*_qc.csv; default: kept)")
    return p
