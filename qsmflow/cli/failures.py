"""Why a run failed, in one paragraph: the error's own message, read from Nipype's crash
files, instead of a traceback on the console."""

from __future__ import annotations

import logging
import os
import re
import signal
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

# qsmflow's own errors carry a message written for the user; other exceptions keep their type.
_OWN_ERRORS = ("qsmflow.bids.errors.QSMInputError", "qsmflow.bids.errors.QSMUsageError")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): ?(.*)$")


def crash_message(text: str) -> str:
    """The innermost exception of a Nipype crash file, as ``Type: message``.

    Nipype nests the interface's traceback, tab-indented, inside the node's; the last
    exception line of the innermost traceback names what really went wrong.
    """
    inner = [line[1:] for line in text.splitlines() if line.startswith("\t")]
    lines = inner if any(_EXCEPTION_LINE.match(line) for line in inner) else text.splitlines()
    starts = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    if not starts:
        return ""
    name, message = _EXCEPTION_LINE.match(lines[starts[-1]]).groups()
    rest = [line.strip() for line in lines[starts[-1] + 1:] if line.strip()]
    message = " ".join([message.strip(), *rest]).strip()
    return message if name in _OWN_ERRORS else f"{name.rsplit('.', 1)[-1]}: {message}"


def describe_failure(stages: list[str], crash_dir: Path, workflow_name: str, *,
                     since: float) -> str:
    """One paragraph for a run whose ``stages`` failed: what happened and where to look.

    ``workflow_name`` is the run's sub-workflow; only crash files written after ``since``
    (a ``time.time()``) count, so that old crashes in a reused OUTPUT_DIR are ignored.
    """
    crash_dir = Path(crash_dir)
    reports = []
    for path in sorted(crash_dir.glob("crash-*.txt"), key=lambda p: p.stat().st_mtime):
        if path.stat().st_mtime < since - 1:
            continue
        text = path.read_text(errors="replace")
        node = text.splitlines()[0].removeprefix("Node: ").strip() if text else ""
        if f".{workflow_name}." in f".{node}.":
            reports.append((node.rsplit(".", 1)[-1], path, crash_message(text)))
    if not reports:
        return (f"processing failed in stage(s) {', '.join(stages) or '?'}; see the crash "
                f"files in {crash_dir}")
    node, path, message = reports[0]
    return (f"stage {node} failed: {message or 'see the crash file'} "
            f"(traceback in {path})")


def write_crash_report(output_dir) -> Path | None:
    """Save the traceback of the exception being handled, in ``OUTPUT_DIR/logs`` when that
    folder exists, else in the temporary folder; return where (None if nowhere)."""
    name = f"qsmflow_{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}_crash.txt"
    folders = [Path(tempfile.gettempdir())]
    if output_dir and Path(output_dir).is_dir():
        folders.insert(0, Path(output_dir) / "logs")
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(traceback.format_exc())
            return folder / name
        except OSError:
            continue
    return None


_WORKERS_IGNORE_SIGINT = False


def ignore_sigint_in_workers() -> None:
    """Let Ctrl-C reach only the main process: forked workers (MultiProc's pool) ignore
    SIGINT, so that they do not each print a traceback; the main process stops them."""
    global _WORKERS_IGNORE_SIGINT
    if not _WORKERS_IGNORE_SIGINT and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        _WORKERS_IGNORE_SIGINT = True


def stop_workers(timeout_s: float = 5.0) -> None:
    """Terminate this process's children (the workers of an interrupted run), so that
    the interpreter does not wait for their nodes to finish before it exits.

    The process pool then fails every future still pending on them, and Nipype's
    callback re-raises that (BrokenProcessPool) into the ``concurrent.futures`` logger,
    which would print a traceback per node after the interruption message: that logger is
    silenced first, as the failures are the ones this function causes.
    """
    logging.getLogger("concurrent.futures").setLevel(logging.CRITICAL + 1)
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
    except Exception:  # psutil missing or the process table unreadable: nothing to do
        return
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=timeout_s)
