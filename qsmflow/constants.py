"""Physical constants and unit conversions, defined once with their units."""

import math

# Proton gyromagnetic ratio divided by 2*pi (CODATA 2018).
GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478518e6

PPM = 1e-6

# Susceptibility difference between air and brain tissue (tissue -9.05 ppm,
# air +0.36 ppm in SI volume units; Schenck 1996).
AIR_MINUS_TISSUE_CHI_PPM = 9.41

# Truncated k-space division: |D| below this (unitless) is replaced by +-threshold in the
# inverse kernel (Shmueli 2009; Wharton 2010 use 0.19 in the same sense).
TKD_THRESHOLD = 0.19


def hz_per_ppm(b0_t: float) -> float:
    """Frequency shift in Hz produced by a 1 ppm field perturbation at ``b0_t``."""
    return GYROMAGNETIC_RATIO_HZ_PER_T * b0_t * PPM


def rad_per_ppm(b0_t: float, te_s: float) -> float:
    """Phase in rad accumulated at echo time ``te_s`` by a 1 ppm field at ``b0_t``."""
    return 2.0 * math.pi * hz_per_ppm(b0_t) * te_s
