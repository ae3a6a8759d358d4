"""The registry of shipped NSIDL weights: offline loading with a sha256 check."""

from __future__ import annotations

from pathlib import Path

import torch

from qsmflow.data import data_path
from qsmflow.files import sha256_file

from .nsidl import NSIDL, NSIDLConfig

DEFAULT_WEIGHTS_NAME = "nsidl_v1.pt"


class WeightsError(RuntimeError):
    """Missing, corrupt or mismatching model weights."""


def default_weights_path() -> Path:
    return data_path(DEFAULT_WEIGHTS_NAME)


def expected_sha256(path: Path) -> str | None:
    """The sha256 recorded beside shipped weights (``<name>.sha256``), if any."""
    record = Path(str(path) + ".sha256")
    return record.read_text().split()[0] if record.is_file() else None


def verify_weights(path=None) -> str:
    """Check that the weights exist and match their recorded sha256; return the sha256.

    Reads bytes only: no torch call, so a parent process can check the weights before it
    forks workers without starting torch's thread pools (a fork after they started can
    deadlock the children).
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise WeightsError(f"NSIDL weights not found at {path}. Pass --weights PATH, or "
                           "choose a classical method with --inversion tkd|cfl2|ndi.")
    digest = sha256_file(path)
    expected = expected_sha256(path)
    if expected is not None and expected != digest:
        raise WeightsError(f"{path}: sha256 {digest} does not match the recorded {expected}; "
                           "the file is corrupt or was replaced. Reinstall qsmflow.")
    return digest


def load_nsidl(path=None, *, device: str = "cpu") -> tuple[NSIDL, str]:
    """Load NSIDL weights (default: the shipped ones) and return the model and its sha256.

    Shipped weights are checked against their recorded sha256; user weights are loaded
    as given and their hash is reported for provenance. The model's
    ``inference_iterations`` attribute is the number of unrolled iterations to run,
    recorded in the weights file (default: all trained iterations), and
    ``inference_dc_steps`` the final data-consistency steps after them (default 0).
    """
    path = Path(path) if path is not None else default_weights_path()
    digest = verify_weights(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model = NSIDL(NSIDLConfig(**state["config"]))
        model.load_state_dict(state["state_dict"])
        model.inference_iterations = int(state.get("inference_iterations",
                                                   model.config.n_iterations))
        model.inference_dc_steps = int(state.get("inference_dc_steps", 0))
    except Exception as err:
        raise WeightsError(f"{path}: not valid NSIDL weights ({err}).") from err
    return model.to(device).eval(), digest
