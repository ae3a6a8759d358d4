"""Write the participant reports at the end of ``qsmflow ... participant``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

LOGGER = logging.getLogger("qsmflow")


def write_reports(output_dir: Path, *, succeeded: Sequence[str], failures: Mapping[str, str],
                  submitted: Sequence[str], warnings: Mapping[str, Sequence[str]],
                  reporter, record: dict, record_path: Path) -> list[Path]:
    """One ``sub-<label>.html`` per participant that had runs, succeeded or failed.

    ``reporter`` is the run's :class:`~qsmflow.cli.progress.ProgressReporter` (None when
    nothing ran). ``failures`` maps run labels to why they failed. A report that cannot
    be written is logged and does not change the exit status: the derivatives are
    complete without it.
    """
    from qsmflow.reports.html import RunInfo, entities_from_label, write_participant_report

    runs: dict[str, list[RunInfo]] = {}
    entries = ([RunInfo(label) for label in succeeded]
               + [RunInfo(label, "failed", message) for label, message in failures.items()]
               + [RunInfo(label, "submitted", "submitted as a cluster job; its outputs were "
                          "not ready when this report was written") for label in submitted])
    for info in entries:
        try:
            subject = entities_from_label(info.label)["subject"]
        except ValueError:
            LOGGER.debug("no report for %r: not a run label", info.label)
            continue
        runs.setdefault(subject, []).append(info)
    pages = []
    for subject, infos in sorted(runs.items()):
        try:
            page = write_participant_report(
                output_dir, subject, runs_info=infos,
                timings=reporter.timings if reporter else {}, warnings=warnings,
                config_record=record,
                stage_details=reporter.details if reporter else {}, record_path=record_path)
        except Exception as err:  # the report must never cost the user the derivatives
            LOGGER.error("sub-%s: the HTML report could not be written: %s", subject, err,
                         exc_info=LOGGER.isEnabledFor(logging.DEBUG))
            continue
        LOGGER.info("report: %s", page)
        pages.append(page)
    return pages
