"""Provenance records written beside the derivatives."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import tomli_w

from qsmflow import __version__
from qsmflow.interfaces.derivatives import atomic_write_text

KEY_DEPENDENCIES = ("numpy", "scipy", "nibabel", "nipype", "pybids", "torch", "antspyx",
                    "nilearn", "pandas")


def dependency_versions() -> dict:
    versions = {}
    for name in KEY_DEPENDENCIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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


def write_dataset_description(output_dir: Path) -> None:
    """Write the derivatives' dataset_description.json once (safe with parallel writers)."""
    path = Path(output_dir) / "dataset_description.json"
    content = {
        "Name": "qsmflow derivatives", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "qsmflow", "Version": __version__,
                         "CodeURL": "https://github.com/qsmflow/qsmflow"}],
    }
    if path.exists():
        try:
            existing = json.loads(path.read_text())
            if existing.get("DatasetType") == "derivative":
                return
        except json.JSONDecodeError:
            pass
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")


def write_run_record(path: Path, config_dict: dict, *, started: str, finished: str | None,
                     weights_sha256: str | None, extra: dict | None = None) -> None:
    """The resolved configuration and the software record of one run, as TOML."""
    record = {
        "qsmflow": {"version": __version__, "git_hash": git_hash() or "",
                    "command_line": " ".join(sys.argv), "started": started,
                    "finished": finished or "", "nsidl_weights_sha256": weights_sha256 or ""},
        "dependencies": dependency_versions(),
        "config": config_dict,
    }
    if extra:
        record["run"] = extra
    atomic_write_text(path, tomli_w.dumps(record))
