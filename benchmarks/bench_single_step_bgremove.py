"""Experiment: a Laplacian-domain joint inversion as the model of the background refinement.

    python benchmarks/bench_single_step_bgremove.py [--lam 3e-5 1e-4 3e-4] [--iterations 300]

Not part of the pipeline: it records whether a stronger first susceptibility estimate than
the closed-form L2 inversion of ``refine_with_dipole_model`` closes the gap on the second
head of ``tests/algorithms/test_phase_pipeline.py`` (docs/benchmarks.md, "Phase
processing"). The estimate is that of the Laplacian-based single-step methods (TGV-QSM,
Langkammer C, et al. NeuroImage 2015;111:622-630): the Laplacian annihilates any harmonic
background, so

    chi = argmin ||M_int (L f - L D chi)||^2 + lam ||grad chi||^2,   chi = 0 outside the mask,

with ``L`` the 7-point Laplacian, ``M_int`` the voxels whose six neighbours are in the mask,
solved by conjugate gradients on the normal equations with a circulant preconditioner.
Reported per head and input: NRMSE of ``D chi`` itself and of ``D chi + LBV(f - D chi)`` (the
refinement's form) against the field of ``(chi - mean) * brain``, on LBV's output mask,
with the plain refinement for comparison, and the time of the solve.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import MNI_PHANTOM_GENERATOR, write_result  # noqa: E402

from qsmflow.algorithms.bgremove import lbv, refine_with_dipole_model  # noqa: E402
from qsmflow.algorithms.bgremove.lbv import _six_neighbour_interior  # noqa: E402
from qsmflow.algorithms.dipole import dipole_kernel_rfft, forward_field_ppm  # noqa: E402
from qsmflow.algorithms.fourier import (  # noqa: E402
    bounding_box,
    fast_padded_shape,
    irfftn,
    pad_to,
    rfftn,
)
from qsmflow.algorithms.inversion import _gradient_energy_symbol  # noqa: E402

PAD_VOX = 8  # L D is nearly local: a few voxels of padding keep the convolution from wrapping
TOLERANCE = 1e-3  # relative residual of the normal equations


def _nrmse(estimate, truth, region):
    error = estimate[region] - truth[region]
    reference = truth[region] - truth[region].mean()
    return float(np.linalg.norm(error - error.mean()) / np.linalg.norm(reference))


def laplacian_single_step(field, mask, voxel_size_mm, b0_direction, *, lam, iterations):
    """Susceptibility (field units) whose Laplacian field matches ``L field`` in the interior."""
    interior = _six_neighbour_interior(mask)
    box = bounding_box(mask)
    sub = mask[box]
    shape = fast_padded_shape(sub.shape, [PAD_VOX] * 3)
    in_mask, inner = pad_to(sub.astype(float), shape)
    in_interior, _ = pad_to(interior[box].astype(float), shape)
    field_p, _ = pad_to(field[box] * sub, shape)
    # |F(grad)|^2 per mm^2; the 7-point Laplacian's symbol is its negative.
    energy = _gradient_energy_symbol(shape, voxel_size_mm) / np.min(voxel_size_mm) ** 2
    laplacian = -energy
    ld = laplacian * dipole_kernel_rfft(shape, voxel_size_mm, b0_direction)
    data = in_interior * irfftn(laplacian * rfftn(field_p), shape)

    def normal_operator(x):
        spectrum = rfftn(x)
        residual = in_interior * irfftn(ld * spectrum, shape)
        return in_mask * irfftn(ld * rfftn(residual) + lam * energy * spectrum, shape)

    preconditioner = 1.0 / (ld**2 + lam * energy + 1e-3 * lam * np.abs(laplacian).max())

    def precondition(r):
        return in_mask * irfftn(preconditioner * rfftn(r), shape)

    rhs = in_mask * irfftn(ld * rfftn(data), shape)
    x = np.zeros(shape)
    r = rhs.copy()
    z = precondition(r)
    p = z.copy()
    rz = np.vdot(r, z)
    rhs_norm = np.linalg.norm(rhs)
    iteration = 0
    while iteration < iterations:
        iteration += 1
        ap = normal_operator(p)
        alpha = rz / np.vdot(p, ap)
        x += alpha * p
        r -= alpha * ap
        if np.linalg.norm(r) <= TOLERANCE * rhs_norm:
            break
        z = precondition(r)
        rz_new = np.vdot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    chi = np.zeros(field.shape)
    chi[box] = x[inner] * sub
    return chi, interior, iteration


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args(argv)
    from tests.algorithms.test_phase_pipeline import SECOND_HEAD, TEST_HEAD, _simulate

    rows = []
    print("| head | input | estimate | lam | CG iterations | solve s | NRMSE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for head_name, head in (("test", TEST_HEAD), ("second", SECOND_HEAD)):
        run = _simulate(head)
        vsz, b0, truth, brain = run["voxel_size"], run["b0"], run["truth"], run["brain"]
        reliable = run["reliable"]
        total = run["acq"].total_field_ppm
        inputs = {"noisy phase": run["field_ppm"],
                  "true total field": (total - np.median(total[reliable])) * brain}
        for input_name, field in inputs.items():
            refined, eroded = refine_with_dipole_model(
                lambda f, m, vsz=vsz: lbv(f, m, vsz), field, reliable, vsz, b0)
            rows.append(dict(head=head_name, input=input_name, estimate="LBV + refinement (CFL2)",
                             nrmse=_nrmse(refined, truth, eroded)))
            print(f"| {head_name} | {input_name} | LBV + refinement (CFL2) | - | - | - | "
                  f"{rows[-1]['nrmse']:.3f} |")
            for lam in args.lam:
                start = time.perf_counter()
                chi, interior, n_iterations = laplacian_single_step(
                    field, reliable, vsz, b0, lam=lam, iterations=args.iterations)
                model = forward_field_ppm((chi - chi[interior].mean()) * reliable, vsz, b0)
                seconds = time.perf_counter() - start
                rest, eroded = lbv(field - model, reliable, vsz)
                for estimate, local in (("D chi", model), ("D chi + LBV(f - D chi)",
                                                           model + rest)):
                    rows.append(dict(head=head_name, input=input_name, estimate=estimate,
                                     lam=lam, cg_iterations=n_iterations, solve_s=seconds,
                                     nrmse=_nrmse(local, truth, eroded)))
                    print(f"| {head_name} | {input_name} | {estimate} | {lam:g} | "
                          f"{n_iterations} | {seconds:.1f} | {rows[-1]['nrmse']:.3f} |",
                          flush=True)
    write_result("single_step_bgremove", dict(rows=rows),
                 command="python benchmarks/bench_single_step_bgremove.py",
                 generator=f"{MNI_PHANTOM_GENERATOR}; the test and second heads of "
                 "tests/algorithms/test_phase_pipeline.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
