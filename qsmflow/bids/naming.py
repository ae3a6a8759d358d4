"""BIDS derivative file names built from entities in canonical order."""

from __future__ import annotations

from pathlib import Path

# Order of entities in BIDS file names (BIDS specification, Appendix: entity table).
CANONICAL_ENTITY_ORDER = (
    ("subject", "sub"), ("session", "ses"), ("task", "task"), ("acquisition", "acq"),
    ("ceagent", "ce"), ("reconstruction", "rec"), ("direction", "dir"), ("run", "run"),
    ("echo", "echo"), ("part", "part"), ("space", "space"), ("from_space", "from"),
    ("to_space", "to"), ("mode", "mode"), ("description", "desc"),
)
KNOWN_ENTITIES = {name for name, _ in CANONICAL_ENTITY_ORDER}


def _check_value(key: str, value) -> str:
    text = str(value)
    # isalnum() alone accepts any Unicode letter or digit ("é", "²"); BIDS labels are ASCII.
    if not text or not text.isascii() or not text.replace("+", "").isalnum():
        raise ValueError(f"BIDS entity {key}={text!r} must be non-empty and alphanumeric")
    return text


def bids_filename(entities: dict, suffix: str, extension: str) -> str:
    """File name such as ``sub-01_ses-1_acq-fast_run-2_desc-local_fieldmap.nii.gz``.

    ``entities`` uses pybids' long names (``subject``, ``session``, ``acquisition``,
    ``run``, ``space``, ``description`` ...); ``None`` values are left out.
    """
    unknown = {k for k, v in entities.items() if v is not None} - KNOWN_ENTITIES
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    if entities.get("subject") is None:
        raise ValueError("a BIDS file name needs the subject entity")
    parts = [f"{short}-{_check_value(short, entities[name])}"
             for name, short in CANONICAL_ENTITY_ORDER if entities.get(name) is not None]
    if not (suffix.isascii() and suffix.isalnum()):
        raise ValueError(f"BIDS suffix {suffix!r} must be alphanumeric")
    extension = extension if extension.startswith(".") else "." + extension
    return "_".join(parts + [suffix]) + extension


def derivative_path(out_dir, entities: dict, suffix: str, extension: str,
                    datatype: str = "anat") -> Path:
    """``out_dir/sub-X[/ses-Y]/datatype/<bids_filename>``."""
    folder = Path(out_dir) / f"sub-{entities['subject']}"
    if entities.get("session") is not None:
        folder = folder / f"ses-{entities['session']}"
    return folder / datatype / bids_filename(entities, suffix, extension)
