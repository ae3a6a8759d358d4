"""Methods text and its references, shared by the workflows and the participant report.

``init_qsm_wf`` sets its ``workflow.__desc__`` with :func:`qsm_methods`, and the HTML
report prints the same paragraph, so the two cannot drift apart. Citations are written
in the text as ``[Key]`` or ``[Key; Key]``; :func:`cited_references` turns them into the
reference list from :data:`REFERENCES`.
"""

from __future__ import annotations

import re

from qsmflow.algorithms.bgremove import refinement_estimate
from qsmflow.algorithms.inversion import TKD_DEFAULT_THRESHOLD

MODEL_CARD = "qsmflow/data/MODEL_CARD.md"

REFERENCES = {
    "Liu 2013": "Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear "
                "formulation of the magnetic field to source relationship for robust "
                "quantitative susceptibility mapping. Magn Reson Med 2013;69:467-476 "
                "(MEDI Fit_ppm_complex).",
    "Ghiglia & Romero 1994": "Ghiglia DC, Romero LA. Robust two-dimensional weighted and "
                             "unweighted phase unwrapping that uses fast transforms and "
                             "iterative methods. J Opt Soc Am A 1994;11:107-117.",
    "Schofield & Zhu 2003": "Schofield MA, Zhu Y. Fast phase unwrapping algorithm for "
                            "interferometric applications. Opt Lett 2003;28:1194-1196.",
    "Schweser 2011": "Schweser F, Deistung A, Lehr BW, Reichenbach JR. Quantitative imaging "
                     "of intrinsic magnetic tissue properties using MRI signal phase: an "
                     "approach to in vivo brain iron metabolism? NeuroImage "
                     "2011;54:2789-2807.",
    "Wu 2012": "Wu B, Li W, Guidon A, Liu C. Whole brain susceptibility mapping using "
               "compressed sensing. Magn Reson Med 2012;67:137-147.",
    "Zhou 2014": "Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving "
                 "the Laplacian boundary value problem. NMR Biomed 2014;27:312-319.",
    "Liu 2018": "Liu Z, Kee Y, Zhou D, Wang Y, Spincemaille P. Preconditioned total field "
                "inversion (TFI) method for quantitative susceptibility mapping. Magn Reson "
                "Med 2018;79:2795-2803.",
    "Wen 2014": "Wen Y, Zhou D, Liu T, Spincemaille P, Wang Y. An iterative spherical mean "
                "value method for background field removal in MRI. Magn Reson Med "
                "2014;72:1065-1071.",
    "Shmueli 2009": "Shmueli K, de Zwart JA, van Gelderen P, Li TQ, Dodd SJ, Duyn JH. "
                    "Magnetic susceptibility mapping of brain tissue in vivo using MRI phase "
                    "data. Magn Reson Med 2009;62:1510-1522.",
    "Bilgic 2014": "Bilgic B, Chatnuntawech I, Fan AP, Setsompop K, Cauley SF, Wald LL, "
                   "Adalsteinsson E. Fast image reconstruction with L2-regularization. "
                   "J Magn Reson Imaging 2014;40:181-191.",
    "Bilgic 2014b": "Bilgic B, Fan AP, Polimeni JR, Cauley SF, Bianciardi M, Adalsteinsson "
                    "E, Wald LL, Setsompop K. Fast quantitative susceptibility mapping with "
                    "L1-regularization and automatic parameter selection. Magn Reson Med "
                    "2014;72:1444-1459.",
    "Milovic 2018": "Milovic C, Bilgic B, Zhao B, Acosta-Cabronero J, Tejos C. Fast "
                    "nonlinear susceptibility inversion with variational regularization. "
                    "Magn Reson Med 2018;80:814-821.",
    "Kames 2018": "Kames C, Wiggermann V, Rauscher A. Rapid two-step dipole inversion for "
                  "susceptibility mapping with sparsity priors. NeuroImage 2018;167:276-283.",
    "Polak 2020": "Polak D, Chatnuntawech I, Yoon J, Iyer SS, Milovic C, Lee J, Bachert P, "
                  "Adalsteinsson E, Setsompop K, Bilgic B. Nonlinear dipole inversion (NDI) "
                  "enables robust quantitative susceptibility mapping (QSM). NMR Biomed "
                  "2020;33:e4271.",
    "NSIDL 2024-25": "Guo H, Zhang Z. Nonlinear susceptibility inversion deep learning model "
                     "for robust quantitative susceptibility mapping. Proc Intl Soc Mag Reson "
                     "Med (ISMRM) 2024, abstract 5006 (NSIDL; journal version 2025: Nonlinear "
                     "inversion model-driven deep learning method for MRI quantitative "
                     "susceptibility mapping imaging). qsmflow's implementation, its training "
                     f"data and its weights are described in the model card, {MODEL_CARD}.",
    "Lai 2020": "Lai KW, Aggarwal M, van Zijl P, Li X, Sulam J. Learned proximal networks "
                "for quantitative susceptibility mapping. MICCAI 2020:125-135 (LPCNN).",
    "Avants 2008": "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic "
                   "image registration with cross-correlation: evaluating automated labeling "
                   "of elderly and neurodegenerative brain. Med Image Anal 2008;12:26-41.",
    "Fonov 2011": "Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL. "
                  "Unbiased average age-appropriate atlases for pediatric studies. "
                  "NeuroImage 2011;54:313-327.",
    "Rolls 2020": "Rolls ET, Huang CC, Lin CP, Feng J, Joliot M. Automated anatomical "
                  "labelling atlas 3. NeuroImage 2020;206:116189.",
    "Diedrichsen 2009": "Diedrichsen J, Balsters JH, Flavell J, Cussans E, Ramnani N. A "
                        "probabilistic MR atlas of the human cerebellum. NeuroImage "
                        "2009;46:39-46.",
    "Diedrichsen 2011": "Diedrichsen J, Maderwald S, Kuper M, et al. Imaging the deep "
                        "cerebellar nuclei: a probabilistic atlas and normalization "
                        "procedure. NeuroImage 2011;54:1786-1794.",
}

METHOD_DESCRIPTIONS = {
    "nsidl": "NSIDL [NSIDL 2024-25], an unrolled proximal gradient descent on the "
             "nonlinear dipole model with a learned CNN proximal operator [Lai 2020] "
             "(weights trained by qsmflow; see the model card)",
    "tkd": f"truncated k-space division (threshold {TKD_DEFAULT_THRESHOLD:g}) [Shmueli 2009]",
    "cfl2": "closed-form L2 inversion with gradient regularisation [Bilgic 2014]",
    "ndi": "nonlinear dipole inversion with early stopping [Polak 2020]",
    "tv": "total-variation regularised inversion solved by ADMM, weighted by the echo fit's "
          "noise [Bilgic 2014b; Milovic 2018]",
    "rts": "the rapid two-step method (LSMR on the well-conditioned k-space, then total "
           "variation on the ill-conditioned cone) [Kames 2018]",
}

BGREMOVE_DESCRIPTIONS = {
    "vsharp": "V-SHARP [Schweser 2011; Wu 2012]",
    "lbv": "the Laplacian boundary value method (LBV) [Zhou 2014]",
}
REFINEMENT_DESCRIPTION = (
    ", corrected by a second pass on what the field of a first susceptibility estimate "
    "({estimate} of the first pass) does not explain [Liu 2018; Wen 2014]")
# The refinement's first estimate (algorithms.bgremove.refinement_estimate), in words.
REFINEMENT_ESTIMATES = {"nsidl": "NSIDL", "cfl2": "closed-form L2 inversion"}

_CITATION = re.compile(r"\[([^\[\]]+)\]")


def _refinement_text(inversion: str) -> str:
    estimate = REFINEMENT_ESTIMATES[refinement_estimate(inversion)]
    return REFINEMENT_DESCRIPTION.format(estimate=estimate)


def qsm_methods(echo_times_s, b0_t: float, inversion: str, *, bgremove: str = "lbv",
                bgremove_refine: bool = True) -> str:
    """The methods paragraph of the QSM chain of one run (``init_qsm_wf``'s ``__desc__``)."""
    echo_times_s = list(echo_times_s)
    return (
        f"The phase of {len(echo_times_s)} echo(es) (TE = "
        f"{', '.join(f'{te * 1e3:.2f}' for te in echo_times_s)} ms, B0 = {b0_t:g} T) was "
        "combined into a frequency map by a magnitude-weighted complex fit of frequency "
        "and phase offset over echoes [Liu 2013], which removes the echo-independent phase "
        "offset. The map was unwrapped with the least-squares Laplacian method "
        "[Ghiglia & Romero 1994; Schofield & Zhu 2003] inside the brain mask, from which "
        "phase residues were excluded. The background field was removed with "
        f"{BGREMOVE_DESCRIPTIONS[bgremove]}"
        f"{_refinement_text(inversion) if bgremove_refine else ''}"
        " and the susceptibility computed with "
        f"{METHOD_DESCRIPTIONS[inversion]}, using the B0 direction taken from the image "
        "orientation. "
    )


def nsidl_weights_methods(weights_sha256: str) -> str:
    """Which NSIDL weights were used: their sha256 and where they are documented."""
    return (f"The NSIDL weights had sha256 {weights_sha256}; the model card ({MODEL_CARD}) "
            "describes their architecture, training data and known limitations. ")


# What qsmflow.interfaces.atlas registers on (its REGISTRATION_VOXEL_MM and
# REGISTRATION_CROP_MARGIN_MM), in words.
REGISTRATION_GRID_TEXT = ("where the scan is finer than 1.5 mm, registered on a 2 mm grid "
                          "with the magnitude cropped to the brain mask's box plus 10 mm")


def roi_methods(*, atlas: str, registered: bool, chi_reference: str,
                roi_erode_mm: float = 0.0) -> str:
    """The methods paragraph of the deep gray matter ROI table."""
    if registered and atlas.startswith("AAL3"):
        text = ("Deep gray matter regions of the AAL3 atlas [Rolls 2020] and the dentate "
                "nuclei of the SUIT cerebellar atlas (its maximum-probability labels, "
                "defined in MNI152NLin2009cSym space and used on the 2009a template grid "
                "without a transform) [Diedrichsen 2009; Diedrichsen 2011] were "
                "carried from the ICBM 2009a nonlinear symmetric template [Fonov 2011] into "
                "each scan's native space by a rigid, affine and SyN registration of the "
                "template to the brain-masked first-echo magnitude with ANTs [Avants 2008] "
                f"({REGISTRATION_GRID_TEXT}; labels resampled with generic-label "
                "interpolation). ")
    elif registered:
        text = (f"Deep gray matter regions of the atlas {atlas} were carried into each "
                "scan's native space by a rigid, affine and SyN registration of its "
                "template to the brain-masked first-echo magnitude with ANTs "
                f"[Avants 2008] ({REGISTRATION_GRID_TEXT}). ")
    else:
        text = (f"Deep gray matter regions were taken from native-space label images "
                f"supplied by the user ({atlas}). ")
    reference = {"whole_brain": "the mean susceptibility within the QSM mask",
                 "csf": "the median susceptibility of the lateral ventricles",
                 "none": "no reference (values as inverted)"}.get(chi_reference, chi_reference)
    text += (f"Susceptibility statistics per region were computed relative to {reference}"
             + (f", after eroding each region by {roi_erode_mm:g} mm" if roi_erode_mm
                else "") + ". ")
    return text


def cited_references(*texts: str) -> list[tuple[str, str]]:
    """``(key, full reference)`` for every ``[Key]`` cited in ``texts``, in order of first
    citation. Unknown keys raise ``KeyError``: every citation must have its reference."""
    keys: list[str] = []
    for text in texts:
        for group in _CITATION.findall(text):
            for key in (k.strip() for k in group.split(";")):
                if key not in keys:
                    keys.append(key)
    return [(key, REFERENCES[key]) for key in keys]
