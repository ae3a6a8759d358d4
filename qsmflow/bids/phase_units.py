"""Phase scaling by the known convention of the data type, never by observed min/max."""

from __future__ import annotations

import numpy as np

from .errors import QSMInputError

# Integer phase conventions (inclusive ranges) and their mapping onto radians.
SIEMENS_SIGNED_RANGE = (-4096, 4095)  # dcm2niix, Siemens: -4096..4095 -> -pi..pi
UNSIGNED_12BIT_RANGE = (0, 4095)  # 0..4095 -> -pi..pi
RADIANS_TOLERANCE = 1e-3


def phase_to_radians(values: np.ndarray, *, is_integer_type: bool, source: str) -> np.ndarray:
    """Convert stored phase values to radians in [-pi, pi).

    Float data already in [-pi, pi] is radians. Integer-typed data (or float data holding
    integers outside [-pi, pi]) is scanner units: 0..4095 is mapped to [-pi, pi), and
    -4096..4095 to [-pi, pi). Integer-typed data within [-pi, pi] (such as int16 images
    of radians rounded by a converter) cannot be told apart from a tiny scanner range and
    is refused. Anything else is refused with an explanation.

    Parameters
    ----------
    values : ndarray
        The stored (scaled by the NIfTI slope/intercept) phase values.
    is_integer_type : bool
        Whether the file's on-disk data type is an integer type.
    source : str
        File name, used in error messages.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise QSMInputError(f"{source}: the phase image has no finite values.")
    lo, hi = float(finite.min()), float(finite.max())
    integral = bool(np.all(np.equal(np.mod(finite, 1), 0)))
    if lo >= -np.pi - RADIANS_TOLERANCE and hi <= np.pi + RADIANS_TOLERANCE:
        if is_integer_type and integral and (hi - lo) > 0 and hi <= 4:
            raise QSMInputError(
                f"{source}: the phase is stored as integers between {lo:g} and {hi:g}. "
                "That looks like radians rounded to whole numbers, which destroys the "
                "phase. Re-export the phase as floating-point radians or in scanner "
                "units (0..4095 or -4096..4095).")
        return np.clip(values, -np.pi, np.pi)
    if integral and lo >= UNSIGNED_12BIT_RANGE[0] and hi <= UNSIGNED_12BIT_RANGE[1]:
        return values / 4096.0 * 2 * np.pi - np.pi
    if integral and lo >= SIEMENS_SIGNED_RANGE[0] and hi <= SIEMENS_SIGNED_RANGE[1]:
        return values / 4096.0 * np.pi
    raise QSMInputError(
        f"{source}: phase values range from {lo:g} to {hi:g}, which is neither radians "
        "(-pi..pi) nor a known scanner range (0..4095 or -4096..4095). Convert the phase "
        "to radians before running qsmflow.")
