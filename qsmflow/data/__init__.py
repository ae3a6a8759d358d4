"""Shipped data: NSIDL weights and model card, deep gray matter label definitions."""

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """Path of a file shipped in ``qsmflow/data``."""
    return Path(str(resources.files(__name__).joinpath(name)))
