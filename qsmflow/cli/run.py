"""``qsmflow BIDS_DIR OUTPUT_DIR {participant,group}``: the BIDS-app entry point."""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from qsmflow.bids.errors import QSMInputError, QSMUsageError

from .config import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    Config,
    build_config,
    lone_run_nthreads,
)
from .failures import ignore_sigint_in_workers, stop_workers, write_crash_report
from .parser import build_parser

LOGGER = logging.getLogger("qsmflow")


def _setup_logging(verbose: int) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout,
                        force=True)
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    nipype_config.set("execution", "crashfile_format", "txt")
    nipype_config.set("execution", "remove_unnecessary_outputs", "false")
    nipype_config.set("monitoring", "enabled", "false")
    # Node failures are reported by qsmflow in one paragraph (cli/failures.py); Nipype's
    # own messages, with their tracebacks, need -v.
    level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.INFO)
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nipype_logging.getLogger(name).setLevel(level)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _find_derivative(folder: Path, run, suffix_glob: str) -> Path | None:
    base = folder / f"sub-{run.subject}"
    if run.session:
        base = base / f"ses-{run.session}"
    stem = run.label
    matches = sorted((base / "anat").glob(f"{stem}_{suffix_glob}"))
    return matches[0] if matches else None


def _validate_bids_dir(config: Config) -> dict[str, str]:
    """Run the BIDS validator on BIDS_DIR (unless --skip-bids-validation): the
    participants it refuses, with why. They fail as runs do for any other problem of one
    participant (exit 1, named in the summary, the others processed); errors in the
    dataset's own files raise QSMInputError (exit 2, nothing computed)."""
    if config.skip_bids_validation:
        LOGGER.info("BIDS validation skipped (--skip-bids-validation)")
        return {}
    from qsmflow.bids.validator import validate_input_dataset

    t0 = time.time()
    validation = validate_input_dataset(config.bids_dir, config.participant_label)
    result = validation.result
    LOGGER.info("BIDS validator (%s): %d error(s), %d warning(s) in %.1f s%s", result.validator,
                len(result.errors), len(result.warnings), time.time() - t0,
                " (warnings do not stop qsmflow)" if result.warnings else "")
    return validation.refused


def _run_participant_level(config: Config, argv: list[str] | None = None) -> int:
    from qsmflow.bids.derivative_dataset import write_dataset_description
    from qsmflow.bids.discovery import find_gre_runs
    from qsmflow.bids.validation import validate_run_images, validate_same_grid
    from qsmflow.dl.weights import WeightsError, verify_weights
    from qsmflow.workflows.base import RunLabels, init_qsmflow_wf, run_workflow_name

    from .failures import describe_failure
    from .plugins import GRAPH_PLUGINS, plugin_arguments, single_threaded_torch
    from .progress import ProgressReporter
    from .provenance import write_run_record
    from .report import write_reports

    started = _now()
    # The BIDS validator is a subprocess: it runs while pybids indexes the dataset.
    with ThreadPoolExecutor(max_workers=1) as pool:
        validation = pool.submit(_validate_bids_dir, config)
        discovery = find_gre_runs(config.bids_dir,
                                  participant_labels=config.participant_label,
                                  session_labels=config.session_label,
                                  b0_tesla_override=config.b0_tesla,
                                  phase_units=config.phase_units, phase_sign=config.phase_sign)
        refused = validation.result()
    failures = dict(discovery.failures)
    for label, why in refused.items():  # qsmflow's own, more specific, message first
        if not any(key == f"sub-{label}" or key.startswith(f"sub-{label}_") for key in failures):
            failures[f"sub-{label}"] = why
    atlas = None
    if not config.roi_labels_dir:
        from qsmflow.atlases import atlas_cache_dir, custom_atlas, default_atlas

        atlas = (custom_atlas(config.atlas_template, config.atlas, config.atlas_labels)
                 if config.atlas else default_atlas(atlas_cache_dir(config.work_dir)))
    weights_sha = weights_path = None
    if config.inversion == "nsidl":
        from qsmflow.dl.weights import default_weights_path

        weights_path = config.weights or default_weights_path()
        try:
            single_threaded_torch()  # before torch runs here: see its docstring
            weights_sha = verify_weights(config.weights)
        except WeightsError as err:
            raise QSMUsageError(str(err)) from err

    runs, run_labels, masks, warnings = [], {}, {}, {}
    for run in discovery.runs:
        try:
            warnings[run.label] = validate_run_images(run)
            if run.subject in refused:  # the validator's reason, unless ours said more
                continue
            if config.brain_mask_dir:
                mask = _find_derivative(config.brain_mask_dir, run, "*desc-brain_mask.nii*")
                if mask is None:
                    raise QSMInputError(f"{run.label}: no *_desc-brain_mask.nii[.gz] for this "
                                        f"run in --brain-mask-dir {config.brain_mask_dir}.")
                validate_same_grid(mask, run, "brain mask")
                masks[run.label] = str(mask)
            if config.roi_labels_dir:
                image = _find_derivative(config.roi_labels_dir, run, "*desc-deepgm_dseg.nii*")
                tsv = config.roi_labels_dir / "desc-deepgm_dseg.tsv"
                if image is None or not tsv.is_file():
                    raise QSMInputError(
                        f"{run.label}: --roi-labels-dir {config.roi_labels_dir} needs "
                        f"sub-*/anat/{run.label}_desc-deepgm_dseg.nii.gz and "
                        "desc-deepgm_dseg.tsv at its top level.")
                validate_same_grid(image, run, "label image")
                run_labels[run.label] = RunLabels(str(image), str(tsv),
                                                  config.roi_labels_dir.name)
            runs.append(run)
        except QSMInputError as err:
            failures[run.label] = str(err)  # replaces the validator's for a one-run subject
    for label, message in failures.items():
        LOGGER.error("%s cannot be processed:\n  %s", label, message)
    for label, items in warnings.items():
        for item in items:
            LOGGER.warning("%s: %s", label, item)

    config.output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(config.output_dir, config.bids_dir)
    logs = config.output_dir / "logs"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    record_path = logs / f"qsmflow_{stamp}_config.toml"
    write_run_record(record_path, config.to_toml_dict(), started=started, finished=None,
                     weights_sha256=weights_sha, argv=argv, weights_path=weights_path)

    succeeded: list[str] = []
    submitted: list[str] = []
    reporter = None
    if runs:
        LOGGER.info("processing %d run(s): %s", len(runs), ", ".join(r.label for r in runs))
        lone_threads = lone_run_nthreads(config, len(runs))
        workflow = init_qsmflow_wf(
            runs, work_dir=str(config.work_dir), out_dir=str(config.output_dir),
            run_labels=run_labels, atlas=atlas, chi_reference=config.chi_reference,
            roi_erode_mm=config.roi_erode_mm, output_spaces=config.output_spaces,
            registration_nthreads=lone_threads,
            provenance={"QsmflowProvenance": str(record_path.relative_to(config.output_dir))},
            qsm_options=dict(
                mask_method=config.mask_method, mask_threshold=config.mask_threshold,
                mask_erode_mm=config.mask_erode_mm,
                vsharp_radii_mm=list(config.vsharp_radii_mm) or None,
                vsharp_threshold=config.vsharp_threshold, inversion=config.inversion,
                bgremove=config.bgremove, lbv_peel_mm=config.lbv_peel_mm,
                bgremove_refine=config.bgremove_refine,
                nsidl_weights=str(config.weights) if config.weights else None,
                device=config.device, omp_nthreads=config.omp_nthreads,
                head_nthreads=config.head_nthreads,
                inversion_nthreads=lone_threads))
        for run in runs:
            if run.label in masks:
                wf = workflow.get_node(run_workflow_name(run))
                wf.get_node("qsm_wf").get_node("mask").inputs.user_mask = masks[run.label]
        reporter = ProgressReporter({run_workflow_name(r): r.label for r in runs})
        plugin_args = plugin_arguments(config, workflow, reporter)
        workflow.config["execution"]["crashdump_dir"] = str(logs / "crash")
        t0 = time.time()
        # MultiProc calls gc.collect() at every poll (LOCAL_POLL_INTERVAL_S) while a node
        # runs; over this process's objects (pybids, Nipype's graph, torch) that kept one
        # core busy beside the nodes (py-spy: 99 % of the scheduler's samples). Frozen
        # objects are not scanned, and the workers, forked from here, share them.
        gc.freeze()
        try:
            workflow.run(plugin=config.plugin, plugin_args=plugin_args)
        except RuntimeError as err:
            LOGGER.debug("nipype: %s", err)
        finally:
            gc.unfreeze()
        LOGGER.info("workflow finished in %.1f s", time.time() - t0)
        for run in runs:
            if config.plugin in GRAPH_PLUGINS:  # the jobs run on after workflow.run returns
                submitted.append(run.label)
                continue
            ok = run.label in reporter.finished_sinks and run.label not in reporter.failed
            if ok:
                succeeded.append(run.label)
            else:
                failures[run.label] = describe_failure(
                    reporter.failed.get(run.label, []), logs / "crash",
                    run_workflow_name(run), since=t0)

    summary = {"started": started, "finished": _now(), "succeeded": succeeded,
               "failed": failures, "config": str(record_path.name)}
    if submitted:
        summary["submitted"] = submitted
    from qsmflow.files import atomic_write_text
    atomic_write_text(logs / f"qsmflow_{stamp}_summary.json", json.dumps(summary, indent=2))
    record = write_run_record(record_path, config.to_toml_dict(), started=started,
                              finished=summary["finished"], weights_sha256=weights_sha,
                              extra={"succeeded": succeeded, "failed": sorted(failures),
                                     "submitted": submitted},
                              argv=argv, weights_path=weights_path)
    write_reports(config.output_dir, succeeded=succeeded, failures=failures,
                  submitted=submitted, warnings=warnings, reporter=reporter, record=record,
                  record_path=record_path)
    LOGGER.info("done: %d run(s) succeeded, %d failed", len(succeeded), len(failures))
    if submitted:
        LOGGER.info("submitted %d run(s) as %s jobs; they run on after this command: the "
                    "derivatives appear in %s as they finish (follow them with the "
                    "scheduler). Run the same command again to resubmit what failed.",
                    len(submitted), config.plugin, config.output_dir)
    for label, message in failures.items():
        LOGGER.info("  FAILED %s: %s", label, message.splitlines()[0])
    return EXIT_OK if not failures else EXIT_SOME_FAILED


def _run_group_level(config: Config) -> int:
    from qsmflow.analysis.group import run_group_level

    participants = config.bids_dir / "participants.tsv"
    result = run_group_level(config.output_dir,
                             participants if participants.is_file() else None,
                             group_by=config.group_by, model=config.group_model,
                             paired_by=config.paired_by, laterality=config.laterality,
                             exclude_flagged=config.exclude_flagged,
                             participant_label=config.participant_label,
                             session_label=config.session_label)
    for item in result.skipped:
        LOGGER.warning("skipped: %s", item)
    return EXIT_OK


def main(argv=None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.verbose)
        ignore_sigint_in_workers()
        config = build_config(args)
        if config.analysis_level == "participant":
            return _run_participant_level(config, argv)
        return _run_group_level(config)
    except (QSMUsageError, QSMInputError, FileNotFoundError, ValueError) as err:
        print(f"qsmflow: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except PermissionError as err:
        print(f"qsmflow: error: cannot write: {err}. Choose an OUTPUT_DIR and work directory "
              "that you can write to.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        stop_workers()
        print("qsmflow: interrupted. Run the same command again (with the same -w WORK_DIR) "
              "to resume: finished stages are reused.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug, or the system (a full disk ...): no bare traceback
        crash = write_crash_report(getattr(args, "output_dir", None))
        print(f"qsmflow: unexpected error: {type(err).__name__}: {err}. This is a bug in "
              "qsmflow or a problem of the system (such as a full disk); nothing in BIDS_DIR "
              f"was changed. The traceback is in {crash}: please attach it when you report "
              "the problem.", file=sys.stderr)
        return EXIT_SOME_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
