"""Phase in radians from the unit its file is stored in: never from its observed min/max.

A phase image of a head wraps many times, so its values span nearly the whole range of
the unit they are stored in (a 51 x 51 x 41 crop of a 7 T scan spans 99.98% of -pi..pi).
The unit is taken, in this order, from the user's ``--phase-units``, from the sidecar
(BIDS ``Units``; ``Manufacturer`` with ``ConversionSoftware``), or from a range of values
that covers at least :data:`MIN_RANGE_COVERAGE` of exactly one known convention. The
conventions' widths differ by more than that fraction, so at most one can match. Anything
else is refused with the file, its range and ``--phase-units`` named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import QSMInputError

PHASE_UNITS = ("rad", "siemens", "mrad", "deg")  # the choices of --phase-units
PHASE_SIGNS = (1, -1)  # the choices of --phase-sign
MIN_RANGE_COVERAGE = 0.9  # fraction of a convention's range a phase image must span
OPTION_SOURCE = "--phase-units"  # GRERun.phase_units_from when the user gave the unit
_UNITS_KEY_VALUES = {"rad": "rad", "radian": "rad", "radians": "rad",
                     "mrad": "mrad", "milliradian": "mrad", "milliradians": "mrad",
                     "deg": "deg", "degree": "deg", "degrees": "deg"}


@dataclass(frozen=True)
class PhaseConvention:
    """One way of storing phase: ``phase_rad = value * rad_per_unit + offset_rad``."""

    units: str  # the --phase-units choice it belongs to
    low: float
    high: float
    rad_per_unit: float
    offset_rad: float = 0.0
    slack: float = 0.0  # values this far outside low..high still fit (rounding)
    integer: bool = False  # the values must be whole numbers

    @property
    def name(self) -> str:
        scale = {"rad": "radians", "siemens": "Siemens units", "mrad": "milliradians",
                 "deg": "degrees"}[self.units]
        text = {np.pi: "pi", 2 * np.pi: "2pi", -np.pi: "-pi"}
        return f"{scale} {text.get(self.low, f'{self.low:g}')}.." \
               f"{text.get(self.high, f'{self.high:g}')}"

    def fits(self, low: float, high: float, integral: bool) -> bool:
        return (integral or not self.integer) and low >= self.low - self.slack and \
            high <= self.high + self.slack

    def coverage(self, low: float, high: float) -> float:
        return (high - low) / (self.high - self.low)


CONVENTIONS = (
    PhaseConvention("rad", -np.pi, np.pi, 1.0, slack=1e-3),
    PhaseConvention("rad", 0.0, 2 * np.pi, 1.0, slack=1e-3),
    # dcm2niix: the DICOM's 0..4095 with slope 2 and intercept -4096 -> -4096..4094.
    PhaseConvention("siemens", -4096, 4095, np.pi / 4096, integer=True),
    PhaseConvention("siemens", 0, 4095, 2 * np.pi / 4096, -np.pi, integer=True),
    PhaseConvention("mrad", -3142, 3142, 1e-3, slack=0.5),
    PhaseConvention("mrad", 0, 6283, 1e-3, slack=0.5),
    PhaseConvention("deg", -180, 180, np.pi / 180, slack=0.5),
    PhaseConvention("deg", 0, 360, np.pi / 180, slack=0.5),
)


def phase_units_from_metadata(metadata: dict, *, source: str) -> tuple[str | None, str]:
    """``(units, where it was read)`` from a phase sidecar, or ``(None, "")``.

    BIDS ``Units`` of a ``part-phase`` file is ``rad`` or ``arbitrary``; ``arbitrary``
    says nothing about the scale. Siemens phase converted by dcm2niix is stored in
    Siemens units (-4096..4095).
    """
    units = metadata.get("Units")
    if units is not None:
        value = _UNITS_KEY_VALUES.get(str(units).strip().lower())
        if value is not None:
            return value, f'its sidecar\'s "Units": "{units}"'
        if str(units).strip().lower() != "arbitrary":
            raise QSMInputError(
                f"{source}: the sidecar's \"Units\": {units!r} is not a unit of phase that "
                "qsmflow knows (BIDS allows \"rad\" or \"arbitrary\" for part-phase files). "
                "Correct the sidecar, or give the unit with --phase-units "
                f"{{{','.join(PHASE_UNITS)}}}.")
    manufacturer = str(metadata.get("Manufacturer", ""))
    software = str(metadata.get("ConversionSoftware", ""))
    if "siemens" in manufacturer.lower() and "dcm2niix" in software.lower():
        return "siemens", f"its sidecar (Manufacturer {manufacturer}, converted by {software})"
    return None, ""


def _range_text(low: float, high: float, integral: bool) -> str:
    return f"from {low:g} to {high:g}{' (integers)' if integral else ''}"


def _all_whole(finite: np.ndarray) -> bool:
    """Whether every (finite) value is a whole number; the first values decide quickly
    for the usual floating-point radians, all of them are checked otherwise."""
    head = finite[:4096]
    if not np.array_equal(head, np.rint(head)):
        return False
    return bool(np.array_equal(finite, np.rint(finite)))


def phase_convention(values: np.ndarray, *, source: str, units: str | None = None,
                     units_from: str = "") -> PhaseConvention:
    """The convention ``values`` are stored in.

    Parameters
    ----------
    values : ndarray
        Finite phase values as stored (after the NIfTI slope and intercept).
    source : str
        The file, named in error messages.
    units : {"rad", "siemens", "mrad", "deg"}, optional
        The unit from the user (``units_from == OPTION_SOURCE``: trusted whatever the
        range, as long as the values fit it) or from the sidecar (checked against the
        range: a range that says another unit is refused). Without it, the range decides.
    units_from : str
        Where ``units`` comes from, for messages.

    Raises
    ------
    QSMInputError
        The range fits no known convention, more than one, or contradicts ``units``;
        or the phase is radians rounded to whole numbers.
    """
    values = np.asarray(values)
    if values.size and np.issubdtype(values.dtype, np.integer):
        # Stored integers (the common case: scanner units): all finite and whole, so only
        # the range needs a pass over the data (the float path costs about 0.3 s a volume).
        low, high, integral = float(values.min()), float(values.max()), True
    else:
        finite = values.astype(np.float64) if values.dtype.kind not in "fc" else values
        ok = np.isfinite(finite)
        finite = finite.ravel() if ok.all() else finite[ok]
        if finite.size == 0:
            raise QSMInputError(f"{source}: the phase image has no finite values.")
        low, high = float(finite.min()), float(finite.max())
        integral = _all_whole(finite)
    observed = _range_text(low, high, integral)
    by_range = [c for c in CONVENTIONS if c.fits(low, high, integral)
                and c.coverage(low, high) >= MIN_RANGE_COVERAGE]
    if units is not None:
        fitting = [c for c in CONVENTIONS if c.units == units and c.fits(low, high, integral)]
        if not fitting:
            known = " or ".join(c.name for c in CONVENTIONS if c.units == units)
            raise QSMInputError(
                f"{source}: {units_from} says the phase is in {units}, but its values range "
                f"{observed}, outside {known}. Check the unit and give the right one with "
                f"--phase-units {{{','.join(PHASE_UNITS)}}}.")
        if units_from != OPTION_SOURCE and by_range and by_range[0].units != units:
            raise QSMInputError(
                f"{source}: {units_from} says the phase is in {units}, but its values range "
                f"{observed}, which is the whole range of {by_range[0].name}. Give the unit "
                f"with --phase-units {{{','.join(PHASE_UNITS)}}} (for example "
                f"--phase-units {by_range[0].units}), or correct the sidecar.")
        # The narrowest that fits: Siemens values that are all >= 0 are 0..4095.
        convention = min(fitting, key=lambda c: c.high - c.low)
    elif len(by_range) == 1:
        convention = by_range[0]
    else:
        near = [f"{c.coverage(low, high):.0%} of {c.name}" for c in CONVENTIONS
                if c.fits(low, high, integral)]
        raise QSMInputError(
            f"{source}: the phase values range {observed}"
            + (f", which spans only {', '.join(near)}" if near else "")
            + ". A phase image wraps many times over a head and spans nearly all of the "
            f"range of its unit (at least {MIN_RANGE_COVERAGE:.0%}), so the unit cannot be "
            "told from these values, and the sidecar does not give it. Check that this "
            "is the phase of the scan, then give its unit with --phase-units "
            f"{{{','.join(PHASE_UNITS)}}} (or \"Units\": \"rad\" in the sidecar of "
            "floating-point radians).")
    if convention.units == "rad" and integral and high > low:
        raise QSMInputError(
            f"{source}: the phase is stored as integers from {low:g} to {high:g}. That "
            "looks like radians rounded to whole numbers, which destroys the phase. "
            "Re-export the phase as floating-point radians or in scanner units "
            "(-4096..4095).")
    return convention


def phase_to_radians(values: np.ndarray, *, source: str, units: str | None = None,
                     units_from: str = "") -> np.ndarray:
    """Stored phase values in radians, wrapped to [-pi, pi).

    Non-finite values are ignored when the convention is decided and stay non-finite.
    See :func:`phase_convention` for the parameters and the refusals.
    """
    values = np.asarray(values)
    convention = phase_convention(values, source=source, units=units, units_from=units_from)
    phase_rad = values.astype(np.float64) * convention.rad_per_unit + convention.offset_rad
    outside = ~((phase_rad >= -np.pi) & (phase_rad < np.pi))  # the others stay as they are
    if outside.any():
        with np.errstate(invalid="ignore"):  # NaN/Inf stay not finite
            phase_rad[outside] = np.mod(phase_rad[outside] + np.pi, 2 * np.pi) - np.pi
    return phase_rad


def polar_from_complex(real: np.ndarray, imag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and phase (rad, in [-pi, pi]) of ``real + i imag``.

    The complex value is formed first, so that nothing passes through a wrapped phase
    (any common scale of real and imaginary parts cancels in the phase).
    """
    signal = np.asarray(real, dtype=np.float64) + 1j * np.asarray(imag, dtype=np.float64)
    return np.abs(signal), np.angle(signal)
