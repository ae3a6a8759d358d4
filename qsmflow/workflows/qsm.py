"""The QSM chain of one GRE run: mask, echo fit, unwrapping, background removal, inversion."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from qsmflow.algorithms.bgremove import refinement_estimate
from qsmflow.algorithms.brain_extraction import DEFAULT_MASK_METHOD
from qsmflow.interfaces.brainmask import BrainMask
from qsmflow.interfaces.gre import (
    CombineEchoes,
    PrepareGRE,
    RemoveBackground,
    UnwrapPhase,
)
from qsmflow.interfaces.inversion import DipoleInversion
from qsmflow.reports.methods import qsm_methods

# Peak memory of the inversion on a 1 mm whole head (224 x 256 x 176), measured with
# workflows/measure_node_resources.py (docs/hpc.md); MultiProc and the cluster plugins
# schedule by these numbers.
# TV and RTS: 1.6 and 1.8 GB peak RSS on the 196 x 230 x 182 head of
# benchmarks/bench_inversion_heads.py (unweighted TV; the pipeline's weighted TV holds three
# more volumes).
INVERSION_MEM_GB = {"nsidl": 6.0, "ndi": 4.0, "tkd": 2.5, "cfl2": 2.5, "tv": 3.0, "rts": 2.5}
STAGE_MEM_GB = 2.0  # mask, echo fit, unwrapping: 1.2-1.8 GB measured
BGREMOVE_MEM_GB = 3.0  # LBV + refinement: 2.2 GB measured (V-SHARP alone: 1.1 GB)


def init_qsm_wf(
    *,
    echo_times_s: list[float],
    b0_t: float,
    user_mask: str | None = None,
    mask_method: str = DEFAULT_MASK_METHOD,
    mask_threshold: float | None = None,
    mask_erode_mm: float | None = None,
    vsharp_radii_mm: list[float] | None = None,
    vsharp_threshold: float = 0.05,
    bgremove: str = "lbv",
    lbv_peel_mm: float = 0.0,
    bgremove_refine: bool = True,
    inversion: str = "nsidl",
    nsidl_weights: str | None = None,
    device: str = "cpu",
    omp_nthreads: int = 1,
    head_nthreads: int | None = None,
    inversion_nthreads: int | None = None,
    phase_units: str | None = None,
    phase_units_from: str = "",
    phase_sign: int = 1,
    name: str = "qsm_wf",
) -> pe.Workflow:
    """Build the QSM chain for one run.

    Inputs
    ------
    magnitude_files, phase_files
        Echo files, sorted by echo number (``phase_units``, ``phase_units_from`` and
        ``phase_sign``: see ``GRERun``).
    real_files, imag_files
        Instead of magnitude and phase: the real and imaginary parts of each echo.

    Outputs
    -------
    magnitude
        4-D magnitude (for reports and registration).
    brain_mask, reliable_mask, eroded_mask
        Brain mask; minus unreliable phase voxels; after background removal's erosion.
    total_field_hz, local_field_hz
        Field maps in Hz.
    chi_ppm
        Susceptibility in ppm, inside ``eroded_mask``.
    weight
        Data weight of the inversion.
    inversion_metadata
        Method, weights hash, B0 direction, effective echo time.
    """
    workflow = pe.Workflow(name=name)
    # The same text is the methods paragraph of the participant report.
    workflow.__desc__ = qsm_methods(echo_times_s, b0_t, inversion, bgremove=bgremove,
                                    bgremove_refine=bgremove_refine)
    inputnode = pe.Node(niu.IdentityInterface(fields=["magnitude_files", "phase_files",
                                                      "real_files", "imag_files"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=[
        "magnitude", "brain_mask", "reliable_mask", "eroded_mask", "total_field_hz",
        "local_field_hz", "chi_ppm", "weight", "inversion_metadata"]), name="outputnode")

    # The mask runs before the branches split: nothing of this run runs beside it.
    head_nthreads = head_nthreads or omp_nthreads
    prepare = pe.Node(PrepareGRE(phase_units=phase_units, phase_units_from=phase_units_from,
                                 phase_sign=phase_sign), name="prepare")
    mask = pe.Node(BrainMask(method=mask_method, echo_times_s=list(echo_times_s),
                             device=device, n_threads=head_nthreads),
                   name="mask", n_procs=head_nthreads, mem_gb=STAGE_MEM_GB)  # deepbet: 1.4 GB
    if mask_erode_mm is not None:
        mask.inputs.erode_mm = mask_erode_mm
    if user_mask:
        mask.inputs.user_mask = user_mask
    if mask_threshold is not None:
        mask.inputs.threshold = mask_threshold
    combine = pe.Node(CombineEchoes(echo_times_s=list(echo_times_s)), name="combine",
                      mem_gb=STAGE_MEM_GB)
    unwrap = pe.Node(UnwrapPhase(n_threads=omp_nthreads), name="unwrap", n_procs=omp_nthreads,
                     mem_gb=STAGE_MEM_GB)
    # A noise-conditioned NSIDL as the refinement's estimate assumes noise-free data.
    refine_model = refinement_estimate(inversion)
    bgremove_node = pe.Node(RemoveBackground(threshold=vsharp_threshold, method=bgremove,
                                             lbv_peel_mm=lbv_peel_mm, refine=bgremove_refine,
                                             refine_model=refine_model, b0_t=b0_t,
                                             echo_times_s=list(echo_times_s), device=device,
                                             n_threads=omp_nthreads),
                            name="bgremove", n_procs=omp_nthreads,
                            mem_gb=max(BGREMOVE_MEM_GB, INVERSION_MEM_GB[refine_model]
                                       if bgremove_refine else 0.0))
    if nsidl_weights and refine_model == "nsidl":
        bgremove_node.inputs.weights_path = nsidl_weights
    if vsharp_radii_mm:
        bgremove_node.inputs.radii_mm = list(vsharp_radii_mm)
    # A lone run's inversion may run more threads than MultiProc counts (n_procs): the
    # registration is usually done by then (qsmflow.cli.config.lone_run_nthreads).
    invert = pe.Node(DipoleInversion(b0_t=b0_t, echo_times_s=list(echo_times_s),
                                     method=inversion, device=device,
                                     n_threads=inversion_nthreads or omp_nthreads),
                     name="invert", n_procs=omp_nthreads,
                     mem_gb=INVERSION_MEM_GB[inversion])
    if nsidl_weights:
        invert.inputs.weights_path = nsidl_weights
    metadata = pe.Node(niu.Function(function=_inversion_metadata,
                                    input_names=["method", "weights_sha256", "b0_direction",
                                                 "effective_te_s"],
                                    output_names=["metadata"]), name="metadata")

    workflow.connect([
        (inputnode, prepare, [("magnitude_files", "magnitude_files"),
                              ("phase_files", "phase_files"), ("real_files", "real_files"),
                              ("imag_files", "imag_files")]),
        (prepare, mask, [("magnitude", "magnitude")]),
        (prepare, combine, [("magnitude", "magnitude"), ("phase_rad", "phase_rad")]),
        (mask, combine, [("mask", "mask")]),
        (combine, unwrap, [("wrapped_phase_rad", "wrapped_phase_rad"),
                           ("reference_dte_s", "reference_dte_s")]),
        (mask, unwrap, [("mask", "mask")]),
        (unwrap, bgremove_node, [("total_field_hz", "total_field_hz"),
                                 ("reliable_mask", "mask")]),
        (combine, bgremove_node, [("weight", "weight")]),
        (bgremove_node, invert, [("local_field_hz", "local_field_hz"),
                                 ("eroded_mask", "mask")]),
        (combine, invert, [("weight", "weight"), ("noise_std_hz", "noise_std_hz"),
                           ("noise_is_absolute", "noise_is_absolute")]),
        (invert, metadata, [("method", "method"), ("weights_sha256", "weights_sha256"),
                            ("b0_direction", "b0_direction"),
                            ("effective_te_s", "effective_te_s")]),
        (prepare, outputnode, [("magnitude", "magnitude")]),
        (mask, outputnode, [("mask", "brain_mask")]),
        (unwrap, outputnode, [("total_field_hz", "total_field_hz"),
                              ("reliable_mask", "reliable_mask")]),
        (bgremove_node, outputnode, [("local_field_hz", "local_field_hz"),
                                     ("eroded_mask", "eroded_mask")]),
        (invert, outputnode, [("chi_ppm", "chi_ppm")]),
        (combine, outputnode, [("weight", "weight")]),
        (metadata, outputnode, [("metadata", "inversion_metadata")]),
    ])
    return workflow


def _inversion_metadata(method, weights_sha256, b0_direction, effective_te_s):
    """Sidecar fields that are known only after the inversion ran."""
    metadata = {"DipoleInversionMethod": method, "B0DirectionVoxel": b0_direction,
                "EffectiveEchoTime": effective_te_s}
    if weights_sha256:
        metadata["NSIDLWeightsSha256"] = weights_sha256
    return metadata
