"""Find and validate multi-echo GRE runs in a BIDS dataset with pybids.

Everything is checked here, before any computation starts: a run is either complete
and consistent, or the user gets one paragraph naming the file and the fix.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import QSMInputError
from .layout import load_layout
from .naming import bids_label
from .phase_units import OPTION_SOURCE, PHASE_UNITS, phase_units_from_metadata

GRE_SUFFIXES = ("MEGRE", "T2starw")
MAX_PLAUSIBLE_TE_S = 0.2  # longer echo times are almost surely in ms, not s
MAX_PLAUSIBLE_B0_T = 21.2
# Entities that do not tell runs apart: the echoes and parts of one run share the rest.
_WITHIN_RUN = ("echo", "part", "extension", "suffix", "datatype")
_PART_NAMES = {"mag": "magnitude", "phase": "phase", "real": "real", "imag": "imaginary"}


@dataclass(frozen=True)
class GRERun:
    """One multi-echo (or single-echo) GRE acquisition: magnitude and phase files, or
    real and imaginary files (``real_files``/``imag_files``, the others empty)."""

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
    other_entities: tuple[tuple[str, str], ...] = ()  # rec, flip, inv, mt ... (pybids names)
    run_label: str | None = None  # the file names' entities, in their order
    real_files: tuple[str, ...] = ()
    imag_files: tuple[str, ...] = ()
    phase_units: str | None = None  # None: decided from each file's range of values
    phase_units_from: str = ""  # OPTION_SOURCE, or the sidecar fields that gave the unit
    phase_sign: int = 1  # -1: the vendor's phase turns the other way

    @property
    def entities(self) -> dict:
        """Entities that name this run's derivatives (pybids' long names)."""
        return {"subject": self.subject, "session": self.session,
                "acquisition": self.acquisition, "run": self.run,
                **dict(self.other_entities)}

    @property
    def label(self) -> str:
        return self.run_label or _run_label(self.subject, self.session, self.acquisition,
                                            self.run)

    @property
    def files(self) -> tuple[str, ...]:
        """Every input image of the run; the first is the first echo's."""
        return self.magnitude_files + self.phase_files + self.real_files + self.imag_files


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
    phase_units: str | None = None,
    phase_sign: int = 1,
) -> Discovery:
    """All GRE runs for the selected participants, each validated on its own.

    A problem with one run (a missing sidecar field, a missing echo) puts that run in
    ``failures`` and leaves the others to be processed; so does a participant whose
    sidecars pybids cannot read (keyed ``sub-<label>``). Files that differ in any entity
    but ``echo`` and ``part`` (``acq``, ``rec``, ``flip``, ``inv``, ``mt``, ``run`` ...)
    are different runs.

    Parameters
    ----------
    participant_labels, session_labels : list of str, optional
        Labels with or without the ``sub-``/``ses-`` prefix. Unknown labels are an error.
    b0_tesla_override : float, optional
        Field strength to use where sidecars lack ``MagneticFieldStrength``.
    phase_units : {"rad", "siemens", "mrad", "deg"}, optional
        The unit of the phase files (``--phase-units``); by default the sidecars or the
        range of the values decide (``phase_units.phase_convention``).
    phase_sign : {1, -1}
        -1 for phase that turns the other way (``--phase-sign``).

    Raises
    ------
    QSMInputError
        When the folder is not BIDS, a label is unknown, or no GRE data exist at all.
    """
    if phase_units is not None and phase_units not in PHASE_UNITS:
        raise QSMInputError(f"phase units {phase_units!r} must be one of {PHASE_UNITS}.")
    layout, left_out = load_layout(bids_dir)
    subjects = layout.get_subjects()
    if participant_labels:
        wanted = [str(p).removeprefix("sub-") for p in participant_labels]
        missing = sorted(set(wanted) - set(subjects) - set(left_out))
        if missing:
            raise QSMInputError(
                f"participant label(s) {', '.join(missing)} not found in {bids_dir}. "
                f"Available: {', '.join(sorted(set(subjects) | set(left_out))) or 'none'}.")
        left_out = {s: m for s, m in left_out.items() if s in wanted}
        subjects = [s for s in wanted if s in subjects]
    query = {"datatype": "anat", "suffix": list(GRE_SUFFIXES),
             "extension": [".nii", ".nii.gz"], "subject": subjects}
    if session_labels:
        sessions = [str(s).removeprefix("ses-") for s in session_labels]
        known = set(layout.get_sessions())
        missing = sorted(set(sessions) - known)
        if missing and not left_out:
            raise QSMInputError(f"session label(s) {', '.join(missing)} not found in {bids_dir}.")
        query["session"] = sessions
    files = layout.get(**query) if subjects else []

    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: {p: [] for p in _PART_NAMES})
    for bids_file in files:
        ent = bids_file.get_entities()
        part = ent.get("part")
        if part not in _PART_NAMES:
            continue  # files without part: not used
        key = (ent["suffix"],) + tuple(sorted((k, str(v)) for k, v in ent.items()
                                              if k not in _WITHIN_RUN))
        groups[key][part].append((ent.get("echo"), bids_file.path))

    runs, failures = [], {f"sub-{s}": m for s, m in sorted(left_out.items())}
    options = {"b0_tesla_override": b0_tesla_override, "phase_units": phase_units,
               "phase_sign": phase_sign}
    labelled = [(_run_label_of(key, parts), key, parts) for key, parts in groups.items()]
    for label, key, parts in sorted(labelled, key=lambda lkp: (lkp[0], str(lkp[1]))):
        try:
            runs.append(_validate_run(layout, key, label, parts, **options))
        except QSMInputError as err:
            failures[label] = str(err)
    if not runs and not failures:
        raise QSMInputError(
            f"no multi-echo GRE data found in {bids_dir} for "
            f"{'participants ' + ', '.join(subjects) if subjects else 'any participant'}. "
            "qsmflow looks for anat/*_part-mag_*MEGRE.nii[.gz] and *_part-phase_* files "
            "(or part-real and part-imag files; T2starw for a single echo), with echo-N "
            "entities for multi-echo data.")
    return Discovery(runs, failures)


def _run_label(subject, session, acquisition, run) -> str:
    return f"sub-{subject}" + "".join(
        f"_{k}-{v}" for k, v in (("ses", session), ("acq", acquisition), ("run", run)) if v)


def _run_label_of(key: tuple, parts: dict) -> str:
    """``sub-01_rec-norm_run-1``: the run's entities in BIDS order (``bids_label``), or,
    for an entity the schema does not name, those of its first file without echo and
    part."""
    try:
        return bids_label(dict(key[1:]))
    except ValueError:
        path = min(p for items in parts.values() for _, p in items)
        pairs = Path(path).name.split(".")[0].split("_")[:-1]
        return "_".join(p for p in pairs if p.split("-")[0] not in ("echo", "part"))


def _check_echoes(label: str, first: str, second: str, parts: dict) -> tuple[list, list]:
    """The files of two parts (``mag``/``phase`` or ``real``/``imag``) sorted by echo,
    after checking that every echo has exactly one file of each."""
    firsts, seconds = parts[first], parts[second]
    if not firsts or not seconds:
        have, lack = (first, second) if firsts else (second, first)
        example = (firsts or seconds)[0][1]
        raise QSMInputError(
            f"{label}: found {_PART_NAMES[have]} images (e.g. {example}) but no "
            f"{_PART_NAMES[lack]} images. QSM needs both part-{first} and part-{second} "
            "files for every echo (or part-mag and part-phase).")
    for part, items in ((first, firsts), (second, seconds)):
        name = _PART_NAMES[part]
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
    first_echoes = sorted(int(e or 1) for e, _ in firsts)
    second_echoes = sorted(int(e or 1) for e, _ in seconds)
    if first_echoes != second_echoes:
        raise QSMInputError(
            f"{label}: {_PART_NAMES[first]} echoes {first_echoes} and {_PART_NAMES[second]} "
            f"echoes {second_echoes} differ. Every echo needs both a part-{first} and a "
            f"part-{second} file.")
    if first_echoes != list(range(1, len(first_echoes) + 1)):
        raise QSMInputError(
            f"{label}: echoes {first_echoes} have gaps; expected "
            f"echo-1..echo-{len(first_echoes)}. Add the missing echo or rename the files "
            "so that echoes are consecutive.")
    return ([p for _, p in sorted(items, key=lambda ep: int(ep[0] or 1))]
            for items in (firsts, seconds))


def _phase_units_of_run(layout, label, phases, phase_units) -> tuple[str | None, str]:
    """The unit of a run's phase files: the option, else what all their sidecars say."""
    if phase_units is not None:
        return phase_units, OPTION_SOURCE
    found = {}
    for phase in phases:
        units, where = phase_units_from_metadata(layout.get_metadata(phase), source=phase)
        found.setdefault(units, (phase, where))
    if len(found) > 1:
        said = "; ".join(f"{p} has {where or 'no unit'}" for p, where in found.values())
        raise QSMInputError(
            f"{label}: the phase sidecars of this run disagree about the unit ({said}). "
            "Correct the sidecars, or give the unit with --phase-units "
            f"{{{','.join(PHASE_UNITS)}}}.")
    units, (phase, where) = next(iter(found.items()))
    return units, (f"{Path(phase).name}: {where}" if units else "")


def _validate_run(layout, key, label, parts, *, b0_tesla_override, phase_units,
                  phase_sign) -> GRERun:
    entities = dict(key[1:])
    suffix = key[0]
    warnings = []
    if parts["phase"] or not (parts["real"] or parts["imag"]):
        mags, phases = _check_echoes(label, "mag", "phase", parts)
        reals = imags = []
        if parts["real"] or parts["imag"]:
            warnings.append("part-real/part-imag files are there too: the part-mag and "
                            "part-phase files are used")
        units, units_from = _phase_units_of_run(layout, label, phases, phase_units)
    else:  # complex data: magnitude and phase are computed from real + i imag
        reals, imags = _check_echoes(label, "real", "imag", parts)
        mags = phases = []
        units, units_from = None, ""
    firsts, seconds = (mags, phases) if mags else (reals, imags)

    echo_times, b0_values = [], set()
    for mag, phase in zip(firsts, seconds, strict=True):
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
                                "Both parts of one echo must share the echo time.")
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
            f"{seconds[0]}: the sidecar has no MagneticFieldStrength. Add it (in tesla) to "
            "the sidecars, or pass --b0-tesla to give the field strength.")
    if not 0 < b0_t <= MAX_PLAUSIBLE_B0_T:
        raise QSMInputError(f"{seconds[0]}: MagneticFieldStrength={b0_t} T is not plausible.")
    if len(echo_times) == 1:
        warnings.append("single echo: the phase offset cannot be estimated and is assumed "
                        "to be zero (coil-combined phase from the scanner)")
    named = ("subject", "session", "acquisition", "run")
    return GRERun(
        entities["subject"], entities.get("session"), entities.get("acquisition"),
        entities.get("run"), suffix, tuple(mags), tuple(phases), tuple(echo_times), b0_t,
        tuple(warnings), other_entities=tuple((k, v) for k, v in entities.items()
                                              if k not in named),
        run_label=label, real_files=tuple(reals), imag_files=tuple(imags),
        phase_units=units, phase_units_from=units_from, phase_sign=phase_sign)
