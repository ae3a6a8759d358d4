"""A known field stored as each vendor's phase convention stores it.

The field is a linear ramp of -80..80 Hz with a 0.7 rad phase offset, sampled at four
echoes 5 ms apart, wrapped, and encoded from the conventions' definitions (not by the
code under test). It is read back from the phase differences of successive echoes;
rounding to whole units bounds the error by one unit per difference,
``quantum_rad / (2 pi dTE)``: 0.56 Hz for whole degrees, 0.032 Hz for milliradians,
0.024 Hz (signed) and 0.049 Hz (unsigned) for Siemens units.
"""

import numpy as np

TE_S = np.array([0.005, 0.010, 0.015, 0.020])
DTE_S = 0.005
FIELD_HZ = np.linspace(-80.0, 80.0, 64)[:, None, None] * np.ones((64, 4, 4))
OFFSET_RAD = 0.7


def true_phase_rad() -> np.ndarray:
    """Wrapped phase of every echo, in [-pi, pi), echoes last."""
    phase = 2 * np.pi * FIELD_HZ[..., None] * TE_S + OFFSET_RAD
    return np.mod(phase + np.pi, 2 * np.pi) - np.pi


# name -> (encode wrapped radians into stored values, one unit in rad, expected units)
ENCODINGS = {
    "siemens -4096..4095": (lambda p: np.clip(np.round(p / np.pi * 4096), -4096, 4095),
                            np.pi / 4096, "siemens"),
    "siemens 0..4095": (lambda p: np.mod(np.round((p + np.pi) / (2 * np.pi) * 4096), 4096),
                        2 * np.pi / 4096, "siemens"),
    "mrad -3142..3142": (lambda p: np.round(p * 1000), 1e-3, "mrad"),
    "mrad 0..6283": (lambda p: np.round(np.mod(p, 2 * np.pi) * 1000), 1e-3, "mrad"),
    "deg -180..180": (lambda p: np.round(np.degrees(p)), np.pi / 180, "deg"),
    "deg 0..360": (lambda p: np.round(np.degrees(np.mod(p, 2 * np.pi))), np.pi / 180, "deg"),
    "float radians": (lambda p: p, 0.0, "rad"),
    "float radians 0..2pi": (lambda p: np.mod(p, 2 * np.pi), 0.0, "rad"),
}


def field_from_phase(phase_rad: np.ndarray) -> np.ndarray:
    """Frequency from the mean phasor of successive echo differences (no unwrapping)."""
    phasor = np.exp(1j * phase_rad)
    return np.angle(np.sum(phasor[..., 1:] * np.conj(phasor[..., :-1]), -1)) / \
        (2 * np.pi * DTE_S)
