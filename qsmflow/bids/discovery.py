"""Find and validate multi-echo GRE runs in a BIDS dataset with pybids.

Everything is checked here, before any computation starts: a run is either complete
and consistent, or the user gets one paragraph naming the file and the fix.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import QSMInputError

GRE_SUFFIXES = ("MEGRE", "T2starw")
MAX_PLAUSIBLE_TE_S = 0.2  # longer echo times are almost surely in ms, not s
MAX_PLAUSIBLE_B0_T = 21.2


@dataclass(frozen=True)
class GRERun:
    """One multi-echo (or single-echo) GRE acquisition with magnitude and phase."""

    subject: str
    session: str | None
    acquisition: str | None
    run: str | None
    suffix: str
    magnitude_files: tuple[str, ...]
    phase_files: tuple[str, ...]
    echo_times_s: tuple[float, ...]
    b0_t: float
    warnings: tuple[str, ...] = field(default=())

    @property
    def entities(self) -> dict:
        """Entities that name this run's derivatives."""
        return {"subject": self.subject, "session": self.session,
                "acquisition": self.acquisition, "run": self.run}

    @property
    def label(self) -> str:
        return _run_label(self.subject, self.session, self.acquisition, self.run)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise QSMInputError(
            f"{path}: cannot read this JSON sidecar ({err}). Fix or remove it.") from err


def load_layout(bids_dir: Path):
    """Index ``bids_dir`` with pybids (no validation, no derivatives)."""
    from bids import BIDSLayout

    bids_dir = Path(bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise QSMInputError(
            f"{bids_dir} is not a BIDS dataset: it has no dataset_description.json. Point "
            "qsmflow at the top folder of a BIDS dataset (the one holding sub-* folders).")
    try:
        return BIDSLayout(str(bids_dir), validate=False, derivatives=False)
    except Exception as err:  # pybids raises many types for broken datasets
        for sidecar in sorted(bids_dir.rglob("*.json")):
            try:
                json.loads(sidecar.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as bad:
                raise QSMInputError(
                    f"{sidecar}: not valid JSON ({bad}), so pybids cannot index the dataset. "
                    "Fix the file (python -m json.tool shows where) or remove it.") from err
        raise QSMInputError(f"{bids_dir}: pybids cannot index this dataset ({err}). Check it "
                            "with the BIDS validator.") from err


def _metadata_float(layout, path: str, key: str, unit: str) -> float | None:
    metadata = layout.get_metadata(path)
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        raise QSMInputError(
            f"{path}: sidecar field {key}={value!r} is a list. One file must hold one echo "
            "(a 4-D echo-stacked file is not BIDS): split it into echo-1, echo-2, ... files, "
            f"each with its own sidecar and a single {key} in {unit}.")
    try:
        if isinstance(value, bool):  # JSON true/false: float() would take them as 1.0/0.0
            raise TypeError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    except (TypeError, ValueError):
        raise QSMInputError(f"{path}: sidecar field {key}={value!r} is not a number in "
                            f"{unit}. Write it as a plain JSON number in {unit}, "
                            "without units or quotes.") from None


@dataclass(frozen=True)
class Discovery:
    """Valid runs, and the runs that cannot be processed with the reason for each."""

    runs: list[GRERun]
    failures: dict[str, str]  # run label -> message


def find_gre_runs(
    bids_dir: Path,
    *,
    participant_labels=None,
    session_labels=None,
    b0_tesla_override: float | None = None,
) -> Discovery:
    """All GRE runs for the selected participants, each validated on its own.

    A problem with one run (a missing sidecar field, a missing echo) puts that run in
    ``failures`` and leaves the others to be processed.

    Parameters
    ----------
    participant_labels, session_labels : list of str, optional
        Labels with or without the ``sub-``/``ses-`` prefix. Unknown labels are an error.
    b0_tesla_override : float, optional
        Field strength to use where sidecars lack ``MagneticFieldStrength``.

    Raises
    ------
    QSMInputError
        When the folder is not BIDS, a label is unknown, or no GRE data exist at all.
    """
    layout = load_layout(bids_dir)
    subjects = layout.get_subjects()
    if participant_labels:
        wanted = [str(p).removeprefix("sub-") for p in participant_labels]
        missing = sorted(set(wanted) - set(subjects))
        if missing:
            raise QSMInputError(
                f"participant label(s) {', '.join(missing)} not found in {bids_dir}. "
                f"Available: {', '.join(sorted(subjects)) or 'none'}.")
        subjects = wanted
    query = {"datatype": "anat", "suffix": list(GRE_SUFFIXES),
             "extension": [".nii", ".nii.gz"], "subject": subjects}
    if session_labels:
        sessions = [str(s).removeprefix("ses-") for s in session_labels]
        known = set(layout.get_sessions())
        missing = sorted(set(sessions) - known)
        if missing:
            raise QSMInputError(f"session label(s) {', '.join(missing)} not found in {bids_dir}.")
        query["session"] = sessions
    files = layout.get(**query) if subjects else []

    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: {"mag": [], "phase": []})
    for bids_file in files:
        ent = bids_file.get_entities()
        part = ent.get("part")
        if part not in ("mag", "phase"):
            continue  # e.g. real/imag parts, or files without part: not used
        key = (ent["subject"], ent.get("session"), ent.get("acquisition"),
               None if ent.get("run") is None else str(ent.get("run")), ent["suffix"])
        groups[key][part].append((ent.get("echo"), bids_file.path))

    runs, failures = [], {}
    for key, parts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        try:
            runs.append(_validate_run(layout, key, parts, b0_tesla_override))
        except QSMInputError as err:
            failures[_run_label(*key[:4])] = str(err)
    if not runs and not failures:
        raise QSMInputError(
            f"no multi-echo GRE data found in {bids_dir} for "
            f"{'participants ' + ', '.join(subjects) if subjects else 'any participant'}. "
            "qsmflow looks for anat/*_part-mag_*MEGRE.nii[.gz] and *_part-phase_* files "
            "(or T2starw for a single echo), with echo-N entities for multi-echo data.")
    return Discovery(runs, failures)


def _run_label(subject, session, acquisition, run) -> str:
    return f"sub-{subject}" + "".join(
        f"_{k}-{v}" for k, v in (("ses", session), ("acq", acquisition), ("run", run)) if v)


def _validate_run(layout, key, parts, b0_tesla_override) -> GRERun:
    subject, session, acquisition, run, suffix = key
    label = _run_label(subject, session, acquisition, run)
    mags, phases = parts["mag"], parts["phase"]
    if not mags or not phases:
        have, lack = ("magnitude", "phase") if mags else ("phase", "magnitude")
        example = (mags or phases)[0][1]
        raise QSMInputError(
            f"{label}: found {have} images (e.g. {example}) but no {lack} images. QSM needs "
            f"both part-mag and part-phase files for every echo.")
    for name, items in (("magnitude", mags), ("phase", phases)):
        echoes = [e for e, _ in items]
        if len(items) > 1 and any(e is None for e in echoes):
            raise QSMInputError(f"{label}: several {name} files but some lack the echo-N "
                                f"entity: {[p for _, p in items]}. Name every echo.")
        bad = [p for e, p in items
               if e is not None and not (str(e).isascii() and str(e).isdigit())]
        if bad:
            raise QSMInputError(f"{bad[0]}: the echo entity must be a number (echo-1, "
                                "echo-2, ...). Rename the file.")
        echoes = [int(e or 1) for e in echoes]  # echo-02 and echo-2 are the same echo
        if len(set(echoes)) != len(echoes):
            dupes = sorted({str(e) for e in echoes if echoes.count(e) > 1})
            raise QSMInputError(f"{label}: duplicate {name} echo(es) {', '.join(dupes)}: "
                                f"{[p for _, p in items]}. Keep one file per echo.")
    mag_echoes = sorted(int(e or 1) for e, _ in mags)
    phase_echoes = sorted(int(e or 1) for e, _ in phases)
    if mag_echoes != phase_echoes:
        raise QSMInputError(
            f"{label}: magnitude echoes {mag_echoes} and phase echoes {phase_echoes} differ. "
            "Every echo needs both a part-mag and a part-phase file.")
    if mag_echoes != list(range(1, len(mag_echoes) + 1)):
        raise QSMInputError(
            f"{label}: echoes {mag_echoes} have gaps; expected echo-1..echo-{len(mag_echoes)}. "
            "Add the missing echo or rename the files so that echoes are consecutive.")
    mags = [p for _, p in sorted(mags, key=lambda ep: int(ep[0] or 1))]
    phases = [p for _, p in sorted(phases, key=lambda ep: int(ep[0] or 1))]

    echo_times, b0_values, warnings = [], set(), []
    for mag, phase in zip(mags, phases, strict=True):
        te = _metadata_float(layout, phase, "EchoTime", "seconds")
        te_mag = _metadata_float(layout, mag, "EchoTime", "seconds")
        if te is None:
            te = te_mag
        if te is None:
            raise QSMInputError(
                f"{phase}: the JSON sidecar has no EchoTime. Add \"EchoTime\" in seconds "
                "(dcm2niix writes it) to this file's sidecar.")
        if te_mag is not None and abs(te_mag - te) > 1e-6:
            raise QSMInputError(f"{mag} and {phase}: EchoTime differs ({te_mag} vs {te} s). "
                                "Magnitude and phase of one echo must share the echo time.")
        if not 0 < te <= MAX_PLAUSIBLE_TE_S:
            hint = " It looks like milliseconds; BIDS wants seconds." if te > 1 else ""
            raise QSMInputError(f"{phase}: EchoTime={te} is not a plausible echo time in "
                                f"seconds.{hint}")
        echo_times.append(te)
        b0 = _metadata_float(layout, phase, "MagneticFieldStrength", "tesla")
        if b0 is None:
            b0 = _metadata_float(layout, mag, "MagneticFieldStrength", "tesla")
        if b0 is not None:
            b0_values.add(b0)
    if any(b <= a for a, b in zip(echo_times, echo_times[1:], strict=False)):
        raise QSMInputError(f"{label}: echo times {echo_times} s do not increase with the "
                            "echo number. Check the EchoTime fields of the sidecars.")
    if len(b0_values) > 1:
        raise QSMInputError(f"{label}: MagneticFieldStrength differs between echoes: "
                            f"{sorted(b0_values)}.")
    if b0_values:
        b0_t = b0_values.pop()
        if b0_tesla_override is not None and abs(b0_tesla_override - b0_t) > 1e-6:
            raise QSMInputError(
                f"{label}: --b0-tesla {b0_tesla_override} conflicts with "
                f"MagneticFieldStrength={b0_t} in the sidecars. Drop --b0-tesla, or fix the "
                "sidecars.")
    elif b0_tesla_override is not None:
        b0_t = float(b0_tesla_override)
    else:
        raise QSMInputError(
            f"{phases[0]}: the sidecar has no MagneticFieldStrength. Add it (in tesla) to "
            "the sidecars, or pass --b0-tesla to give the field strength.")
    if not 0 < b0_t <= MAX_PLAUSIBLE_B0_T:
        raise QSMInputError(f"{phases[0]}: MagneticFieldStrength={b0_t} T is not plausible.")
    if len(echo_times) == 1:
        warnings.append("single echo: the phase offset cannot be estimated and is assumed "
                        "to be zero (coil-combined phase from the scanner)")
    return GRERun(subject, session, acquisition, run, suffix, tuple(mags), tuple(phases),
                  tuple(echo_times), b0_t, tuple(warnings))
