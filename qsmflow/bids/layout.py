"""Indexing a BIDS dataset with pybids, leaving out participants whose sidecars it
cannot read, so that one broken file does not stop the others."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import QSMInputError

_NOT_INDEXED = ("derivatives", "sourcedata", "code", "models", "stimuli")  # by pybids


def _subject_of(path: Path, bids_dir: Path) -> str | None:
    top = path.relative_to(bids_dir).parts[0]
    return top.removeprefix("sub-") if top.startswith("sub-") and top != "sub-" else None


def _invalid_sidecars(bids_dir: Path) -> list[tuple[Path, str]]:
    bad = []
    for sidecar in sorted(bids_dir.rglob("*.json")):
        if any(part.startswith(".") or part in _NOT_INDEXED
               for part in sidecar.relative_to(bids_dir).parts[:-1]):
            continue  # not indexed by pybids
        try:
            json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            bad.append((sidecar, str(err)))
    return bad


def load_layout(bids_dir: Path):
    """Index ``bids_dir`` with pybids (no validation, no derivatives).

    Returns ``(layout, left_out)``: a participant with a sidecar that is not valid JSON
    is left out of the index, and ``left_out`` maps its label to the reason, so that the
    other participants can be processed. Invalid JSON outside ``sub-*`` folders concerns
    every participant and is an error.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

    bids_dir = Path(bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise QSMInputError(
            f"{bids_dir} is not a BIDS dataset: it has no dataset_description.json. Point "
            "qsmflow at the top folder of a BIDS dataset (the one holding sub-* folders).")
    try:
        return BIDSLayout(str(bids_dir), validate=False, derivatives=False), {}
    except Exception as err:  # pybids raises many types for broken datasets
        first_error = err
    left_out: dict[str, str] = {}
    for sidecar, problem in _invalid_sidecars(bids_dir):
        subject = _subject_of(sidecar, bids_dir)
        if subject is None:
            raise QSMInputError(
                f"{sidecar}: not valid JSON ({problem}), so pybids cannot index the "
                "dataset, and this file concerns every participant. Fix the file "
                "(python -m json.tool shows where) or remove it.") from first_error
        left_out.setdefault(subject, (
            f"sub-{subject}: this participant is left out: its sidecar {sidecar} is not "
            f"valid JSON ({problem}). Fix the file (python -m json.tool shows where) or "
            "remove it, then run this participant again."))
    if not left_out:
        raise QSMInputError(f"{bids_dir}: pybids cannot index this dataset ({first_error}). "
                            "Check it with the BIDS validator.") from first_error
    ignore = list(DEFAULT_LOCATIONS_TO_IGNORE) + [str(bids_dir / f"sub-{s}") for s in left_out]
    try:
        layout = BIDSLayout(str(bids_dir), validate=False, derivatives=False,
                            indexer=BIDSLayoutIndexer(validate=False, ignore=ignore))
    except Exception as err:
        raise QSMInputError(f"{bids_dir}: pybids cannot index this dataset ({err}), even "
                            f"without participant(s) {', '.join(left_out)}. Check it with "
                            "the BIDS validator.") from err
    return layout, left_out
