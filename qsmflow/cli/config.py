"""The resolved run configuration: a frozen dataclass built from the command line."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qsmflow.algorithms.brain_extraction import DEFAULT_MASK_METHOD
from qsmflow.analysis.roi import ROI_ERODE_MM
from qsmflow.bids.errors import QSMUsageError

PLUGINS = ("Linear", "MultiProc", "SLURM", "SLURMGraph", "PBS", "PBSGraph", "SGE")
# Local plugins run nodes on this machine; the others submit each node as a cluster job.
LOCAL_PLUGINS = ("Linear", "MultiProc")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
# Threads of one node, at most (the ANTs, FFT and torch libraries gain little beyond).
MAX_OMP_NTHREADS = 8
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


@dataclass(frozen=True)
class Config:
    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    nprocs: int = 1
    omp_nthreads: int = 1
    head_nthreads: int = 1  # threads of the brain mask, before a run's branches split
    mem_gb: float | None = None
    plugin: str = "MultiProc"
    plugin_args: dict = field(default_factory=dict)
    inversion: str = "nsidl"
    weights: Path | None = None
    device: str = "cpu"
    b0_tesla: float | None = None
    phase_units: str | None = None
    phase_sign: int = 1
    mask_method: str = DEFAULT_MASK_METHOD
    mask_threshold: float | None = None
    mask_erode_mm: float | None = None  # None: the method's default
    brain_mask_dir: Path | None = None
    vsharp_radii_mm: tuple[float, ...] = ()
    vsharp_threshold: float = 0.05
    bgremove: str = "lbv"
    lbv_peel_mm: float = 0.0
    bgremove_refine: bool = True
    roi_labels_dir: Path | None = None
    atlas: Path | None = None
    atlas_labels: Path | None = None
    atlas_template: Path | None = None
    chi_reference: str = "whole_brain"
    roi_erode_mm: float = ROI_ERODE_MM
    output_spaces: tuple[str, ...] = ()  # template spaces chi is also resampled into
    group_by: str | None = None
    group_model: str | None = None
    paired_by: str | None = None
    laterality: bool = False
    exclude_flagged: bool = False
    skip_bids_validation: bool = False
    verbose: int = 0

    def to_toml_dict(self) -> dict:
        """Plain types only (paths as strings, None left out), for the TOML record."""
        out = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


def _is_relative_to(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


def _check_writable(folder: Path, what: str) -> None:
    """Fail before any image is read when ``folder`` cannot be created or written to.

    Probes the deepest existing ancestor with a temporary file and creates nothing.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    else:
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as err:
            problem = f"cannot write in {existing}: {err.strerror or err}"
    if problem:
        raise QSMUsageError(f"{what} {folder} cannot be written ({problem}). Choose a folder "
                            "you can write to.")


def _output_spaces(args) -> tuple[str, ...]:
    """The requested template spaces, validated; each once, in the order given."""
    values = tuple(dict.fromkeys(getattr(args, "output_spaces", None) or ()))
    if not values:
        return ()
    from qsmflow.atlases import OUTPUT_SPACES

    unknown = [v for v in values if v not in OUTPUT_SPACES]
    if unknown:
        raise QSMUsageError(f"--output-spaces {unknown[0]} is not a space qsmflow can write; "
                            f"valid: {', '.join(OUTPUT_SPACES)} (the default atlas's template "
                            "at its 1 mm resolution).")
    if args.analysis_level != "participant":
        raise QSMUsageError("--output-spaces is a participant-level option; the group level "
                            "uses the template-space maps the participant level wrote.")
    if args.roi_labels_dir or args.atlas:
        option = "--roi-labels-dir" if args.roi_labels_dir else "--atlas"
        why = ("labels you supply come with no registration to a template"
               if args.roi_labels_dir else "a custom atlas's template is no named space")
        raise QSMUsageError(f"--output-spaces resamples chi through the default atlas's "
                            f"registration, and {why}: drop {option} or --output-spaces.")
    return values


def default_omp_nthreads(nprocs: int) -> int:
    """Threads per node on a local machine: half of ``nprocs`` (at most
    ``MAX_OMP_NTHREADS``).

    A participant's two long branches, the atlas registration and the phase chain up to
    the inversion, need nothing from each other, so with half the CPUs each they run side
    by side. With all the CPUs each, MultiProc runs them one after the other. Measured on
    a 1 mm, 5-echo head on 2 cores (issue 15, ``benchmarks/bench_participant.py``):
    162 s with 1 thread per node against 187 s with 2.
    """
    return max(1, min(nprocs // 2, MAX_OMP_NTHREADS))


def head_nthreads(nprocs: int, omp_nthreads: int) -> int:
    """Threads of a run's brain mask node by default.

    Nothing of the same run can run beside it: both branches (registration, phase chain)
    wait for the mask. So it takes the threads of both branches, ``2 x omp_nthreads`` at
    most ``nprocs``; MultiProc runs it when that many CPUs are free. With
    ``--omp-nthreads`` given, every node keeps to it. Measured on the 1 mm head of
    ``bench_participant`` (2 cores): the deepbet mask in 8.6 s with 2 threads against
    11.5 s with 1, the same mask.
    """
    return max(1, min(nprocs, 2 * omp_nthreads))


def lone_run_nthreads(config, n_runs: int) -> int:
    """Threads of the atlas registration and of the dipole inversion.

    With one run on a local machine and no ``--omp-nthreads``, the registration and the
    phase chain are the only branches, and whichever ends first leaves a core idle. So
    these two nodes run the brain mask's thread count (``head_nthreads``) while MultiProc
    still counts each as one branch: the operating system shares the cores while both
    run. Measured on the 1 mm head of ``bench_participant`` (2 cores): ANTs with two
    threads, NSIDL 114.4 s against 116.9 s with one, ``--inversion tkd`` 99.1-103.2 s
    against 110.6 s (2026-12-03); NSIDL's inversion, which runs once the registration is
    done, then took 11.9 s against 19.8 s with one thread (2026-12-07; the background
    removal, which runs beside the registration, gained nothing from two threads and
    slowed the registration by 5 s). With several runs the other runs' nodes fill the
    cores, and with ``--omp-nthreads`` every node keeps to it.
    """
    return config.head_nthreads if n_runs == 1 else config.omp_nthreads


def build_config(args) -> Config:
    """Validate the parsed arguments and resolve defaults. Conflicts are errors."""
    bids_dir = Path(args.bids_dir).resolve()
    output_dir = Path(args.output_dir).resolve()
    if not bids_dir.is_dir():
        raise QSMUsageError(f"BIDS_DIR {bids_dir} does not exist or is not a folder.")
    if output_dir == bids_dir or _is_relative_to(output_dir, bids_dir) and not \
            _is_relative_to(output_dir, bids_dir / "derivatives"):
        raise QSMUsageError(
            f"OUTPUT_DIR {output_dir} is inside BIDS_DIR {bids_dir}. qsmflow never writes "
            "into the input dataset; choose a folder outside it (or under its derivatives/).")
    if (args.nprocs is not None and args.nprocs < 1) or \
            (args.omp_nthreads is not None and args.omp_nthreads < 1):
        raise QSMUsageError("--nprocs and --omp-nthreads must be at least 1.")
    local = args.plugin in LOCAL_PLUGINS
    if not local and args.nprocs is not None:
        raise QSMUsageError(f"--nprocs sizes the local process pool; with --plugin "
                            f"{args.plugin} every node is its own cluster job. Ask the "
                            "scheduler for resources in --plugin-args instead "
                            "(workflows/README.md).")
    if args.mem_gb is not None and args.plugin != "MultiProc":
        raise QSMUsageError(f"--mem-gb is the memory budget of --plugin MultiProc; --plugin "
                            f"{args.plugin} does not use it. Drop it (cluster plugins: ask "
                            "the scheduler for memory in --plugin-args).")
    nprocs = args.nprocs if args.nprocs is not None else os.cpu_count() or 1
    # A cluster job gets one CPU unless it asks for more: thread counts default to 1 there.
    omp = args.omp_nthreads if args.omp_nthreads is not None else (
        default_omp_nthreads(nprocs) if local else 1)
    head = (head_nthreads(nprocs, omp) if local and args.omp_nthreads is None else omp)
    if local and omp > nprocs:
        raise QSMUsageError(f"--omp-nthreads {omp} exceeds --nprocs {nprocs}: one node would "
                            "use more threads than the whole run may. Lower --omp-nthreads.")
    if args.plugin == "Linear" and args.nprocs and args.nprocs > 1:
        raise QSMUsageError("--plugin Linear runs one node at a time; --nprocs > 1 conflicts "
                            "with it. Use --plugin MultiProc, or drop --nprocs.")
    try:
        plugin_args = json.loads(args.plugin_args) if args.plugin_args else {}
    except json.JSONDecodeError as err:
        raise QSMUsageError(f"--plugin-args is not valid JSON: {err}") from err
    if not isinstance(plugin_args, dict):
        raise QSMUsageError("--plugin-args must be a JSON object, e.g. "
                            "'{\"sbatch_args\": \"-p short\"}'.")
    for key, option in (("n_procs", "--nprocs"), ("memory_gb", "--mem-gb"),
                        ("status_callback", None)):
        if key in plugin_args:
            raise QSMUsageError(f"--plugin-args may not set {key!r}: "
                                + (f"use {option}." if option else "qsmflow sets it."))
    if args.weights and args.inversion != "nsidl":
        raise QSMUsageError(f"--weights is for --inversion nsidl, not {args.inversion}.")
    if args.device == "cuda" and args.inversion != "nsidl":
        raise QSMUsageError("--device cuda only applies to --inversion nsidl.")
    atlas_args = [args.atlas, args.atlas_labels, args.atlas_template]
    if any(atlas_args) and not all(atlas_args):
        raise QSMUsageError("a custom atlas needs all three of --atlas, --atlas-labels and "
                            "--atlas-template.")
    if any(atlas_args) and args.roi_labels_dir:
        raise QSMUsageError("--roi-labels-dir and --atlas are alternatives; give one.")
    if args.chi_reference in ("csf", "white_matter") and (any(atlas_args)
                                                         or args.roi_labels_dir):
        raise QSMUsageError(f"--chi-reference {args.chi_reference} uses the default atlas's "
                            "reference mask; it cannot be combined with --atlas or "
                            "--roi-labels-dir.")
    for name in ("weights", "brain_mask_dir", "roi_labels_dir", "atlas", "atlas_labels",
                 "atlas_template"):
        value = getattr(args, name)
        if value and not Path(value).exists():
            raise QSMUsageError(f"--{name.replace('_', '-')} {value} does not exist.")
    if args.mask_threshold is not None and args.mask_method != "threshold":
        raise QSMUsageError("--mask-threshold is for --mask-method threshold, not "
                            f"{args.mask_method}.")
    if args.mask_erode_mm is not None and args.mask_erode_mm < 0:
        raise QSMUsageError("--mask-erode-mm must be 0 or more.")
    if args.mem_gb is not None and args.mem_gb <= 0:
        raise QSMUsageError("--mem-gb must be positive.")
    if args.b0_tesla is not None and not 0 < args.b0_tesla <= 21.2:
        raise QSMUsageError(f"--b0-tesla {args.b0_tesla} is not a plausible field strength.")
    if args.bgremove == "lbv" and (args.vsharp_radii_mm or args.vsharp_threshold != 0.05):
        raise QSMUsageError("--vsharp-radii-mm/--vsharp-threshold apply to --bgremove vsharp, "
                            "not lbv.")
    if args.lbv_peel_mm and args.bgremove != "lbv":
        raise QSMUsageError("--lbv-peel-mm applies to --bgremove lbv only.")
    if args.lbv_peel_mm < 0:
        raise QSMUsageError("--lbv-peel-mm must not be negative.")
    if args.roi_erode_mm < 0:
        raise QSMUsageError("--roi-erode-mm must be 0 or more (0: no erosion).")
    if args.vsharp_radii_mm and min(args.vsharp_radii_mm) <= 0:
        raise QSMUsageError("--vsharp-radii-mm must all be positive.")
    group_options = [name for name in ("group_by", "group_model", "paired_by", "laterality",
                                       "exclude_flagged") if getattr(args, name, None)]
    if args.analysis_level == "participant" and group_options:
        raise QSMUsageError(f"--{group_options[0].replace('_', '-')} is a group-level option; "
                            "run it with analysis level 'group' after the participant level.")
    if args.analysis_level == "group" and (args.participant_label or args.session_label):
        pass  # allowed: the group level then uses only those participants' tables
    output_spaces = _output_spaces(args)
    work_dir = Path(args.work_dir).resolve() if args.work_dir else Path.cwd() / "work"
    if _is_relative_to(work_dir, bids_dir):
        raise QSMUsageError(f"the work directory {work_dir} is inside BIDS_DIR; choose "
                            "another with -w.")
    if args.analysis_level == "participant":
        _check_writable(output_dir, "OUTPUT_DIR")
        _check_writable(work_dir, "the work directory (-w)")
    return Config(
        bids_dir=bids_dir, output_dir=output_dir, analysis_level=args.analysis_level,
        work_dir=work_dir,
        participant_label=tuple(p.removeprefix("sub-") for p in args.participant_label or ()),
        session_label=tuple(s.removeprefix("ses-") for s in args.session_label or ()),
        nprocs=nprocs, omp_nthreads=omp, head_nthreads=head, mem_gb=args.mem_gb, plugin=args.plugin,
        plugin_args=plugin_args, inversion=args.inversion,
        weights=Path(args.weights).resolve() if args.weights else None, device=args.device,
        b0_tesla=args.b0_tesla, phase_units=args.phase_units, phase_sign=args.phase_sign,
        mask_method=args.mask_method, mask_threshold=args.mask_threshold,
        mask_erode_mm=args.mask_erode_mm,
        brain_mask_dir=Path(args.brain_mask_dir).resolve() if args.brain_mask_dir else None,
        vsharp_radii_mm=tuple(args.vsharp_radii_mm or ()),
        vsharp_threshold=args.vsharp_threshold, bgremove=args.bgremove,
        lbv_peel_mm=args.lbv_peel_mm, bgremove_refine=args.bgremove_refine,
        roi_labels_dir=Path(args.roi_labels_dir).resolve() if args.roi_labels_dir else None,
        atlas=Path(args.atlas).resolve() if args.atlas else None,
        atlas_labels=Path(args.atlas_labels).resolve() if args.atlas_labels else None,
        atlas_template=Path(args.atlas_template).resolve() if args.atlas_template else None,
        chi_reference=args.chi_reference, roi_erode_mm=args.roi_erode_mm,
        output_spaces=output_spaces,
        group_by=args.group_by, group_model=getattr(args, "group_model", None),
        paired_by=getattr(args, "paired_by", None),
        laterality=getattr(args, "laterality", False),
        exclude_flagged=getattr(args, "exclude_flagged", False), verbose=args.verbose,
        skip_bids_validation=getattr(args, "skip_bids_validation", False))
