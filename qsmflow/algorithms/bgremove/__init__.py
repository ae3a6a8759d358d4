"""Background field removal: V-SHARP, the Laplacian boundary value method (LBV), and the
dipole-model refinement of either.

Each method takes the total field inside a mask and returns the local field (the field
of the sources inside the mask) on a possibly smaller mask, in the unit of the input.
One method per module, as in QSM.jl's ``bgremove/``: :mod:`.vsharp`, :mod:`.lbv` (with
its multigrid solver) and :mod:`.refine`.

What can and cannot be recovered: a background field is harmonic inside the mask,
and so is the field of any source distribution outside it. The field of a uniform
susceptibility filling the mask is harmonic inside it too, so the mean susceptibility
of the mask is never recovered; compare against the field of
``(chi - mean(chi[mask])) * mask``. Near the mask surface, the field of the
susceptibility step at the surface (cortex against the excluded CSF) is harmonic in
the interior as well; each method fills that ambiguity with its own prior (SHARP: the
local field is harmonic outside its eroded mask; LBV: the local field is zero on the
mask surface), which is why both are least accurate next to the surface.

Both methods' priors fail the same way: the local field of the sources close to the
surface (cortex, pial veins) reaches the interior as a harmonic field and is removed
with the background. :func:`refine_with_dipole_model` corrects for that with the field
of a first susceptibility estimate.

References
----------
Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging of intrinsic
magnetic tissue properties using MRI signal phase: an approach to in vivo brain iron
metabolism? NeuroImage 2011;54:2789-2807 (SHARP).
Wu B, Li W, Guidon A, Liu C. Whole brain susceptibility mapping using compressed
sensing. Magn Reson Med 2012;67:137-147 (V-SHARP).
Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving the
Laplacian boundary value problem. NMR Biomed 2014;27:312-319 (LBV).
Liu Z, Kee Y, Zhou D, Wang Y, Spincemaille P. Preconditioned total field inversion
(TFI) method for quantitative susceptibility mapping. Magn Reson Med 2018;79:2795-2803.
Wen Y, Zhou D, Liu T, Spincemaille P, Wang Y. An iterative spherical mean value method
for background field removal in MRI. Magn Reson Med 2014;72:1065-1071.
"""

from .lbv import lbv
from .refine import refine_with_dipole_model
from .vsharp import default_vsharp_radii_mm, vsharp

# The methods by the names the configuration uses (``--bgremove``), and how people call them.
METHOD_NAMES = {"lbv": "LBV", "vsharp": "V-SHARP"}

__all__ = ["METHOD_NAMES", "default_vsharp_radii_mm", "describe_background_removal", "lbv",
           "refine_with_dipole_model", "refinement_estimate", "vsharp"]


def refinement_estimate(inversion: str) -> str:
    """The refinement's first susceptibility estimate in a run inverting with ``inversion``:
    ``"nsidl"`` for NSIDL, else ``"cfl2"`` (closed form, two FFTs).

    On the tuning heads 04/05 of qsmflow.simulation.wholehead, end to end, NSIDL's estimate
    against CFL2's: chi NRMSE 57.5 -> 53.7 % and 55.9 -> 53.4 %, DGM |1 - slope| 0.148 ->
    0.108 and 0.072 -> 0.054 (issue 12).
    """
    return "nsidl" if inversion == "nsidl" else "cfl2"


def describe_background_removal(method: str, refined: bool) -> str:
    """What ran, in words: ``"LBV background removal with dipole-model refinement"``.

    The derivatives' sidecars and the report's captions name the background removal
    with this, so that they say what actually ran.

    Parameters
    ----------
    method : {"lbv", "vsharp"}
    refined : bool
        Whether :func:`refine_with_dipole_model` ran around it.
    """
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown background removal method {method!r}; "
                         f"choose one of {sorted(METHOD_NAMES)}")
    return (f"{METHOD_NAMES[method]} background removal"
            + (" with dipole-model refinement" if refined else ""))
