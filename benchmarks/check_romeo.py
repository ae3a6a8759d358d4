"""Development check of phase processing on real 7T data (ROMEO.jl's small test crop).

Not a test: the data live outside the repository (../shared/data/romeo_small, see its
README: 51 x 51 x 41 at 0.469 x 0.469 x 1.0 mm, 3 echoes, TE 4/8/12 ms and 7 T assumed).
It runs the steps of ``qsmflow.interfaces.gre`` on it -- brain mask, echo fit, residues
out of the mask, Laplacian unwrapping, V-SHARP (and LBV) -- and checks that the unwrapped
field has no residual 2 pi jumps inside the mask: the neighbour differences of the
unwrapped phase (over the fit's reference echo spacing) must stay below pi, so the
histogram of field gradients has no mass near +-1/dTE.

Usage::

    python benchmarks/check_romeo.py [--data DIR]

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from qsmflow.algorithms.bgremove import (  # noqa: E402
    default_vsharp_radii_mm,
    lbv,
    refine_with_dipole_model,
    vsharp,
)
from qsmflow.algorithms.dipole import (  # noqa: E402
    b0_direction_from_affine,
    voxel_size_from_affine,
)
from qsmflow.algorithms.echo_combination import fit_echo_phase  # noqa: E402
from qsmflow.algorithms.masking import brain_mask  # noqa: E402
from qsmflow.algorithms.unwrap import laplacian_unwrap, reliable_phase_mask  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "romeo_small" / "bids" / "sub-romeo" / "anat"
MIN_MASK_FRACTION = 0.9  # the crop lies inside the brain: the mask must keep nearly all of it


def load_echoes(folder: Path):
    mags, phases, tes = [], [], []
    for n in range(1, 100):
        stem = folder / f"sub-romeo_echo-{n}_part-"
        if not Path(f"{stem}mag_MEGRE.nii.gz").exists():
            break
        mag_img = nib.load(f"{stem}mag_MEGRE.nii.gz")
        mags.append(np.asarray(mag_img.dataobj, dtype=np.float64))
        phases.append(np.asarray(nib.load(f"{stem}phase_MEGRE.nii.gz").dataobj, np.float64))
        tes.append(json.loads(Path(f"{stem}phase_MEGRE.json").read_text())["EchoTime"])
        affine = mag_img.affine
    if not mags:
        raise SystemExit(f"no echoes found in {folder}")
    return np.stack(mags, -1), np.stack(phases, -1), np.asarray(tes), affine


def neighbour_differences(values, mask):
    """All differences between 6-neighbours that are both inside ``mask``, per axis."""
    out = []
    for axis in range(3):
        n = mask.shape[axis]
        pairs = np.take(mask, range(n - 1), axis) & np.take(mask, range(1, n), axis)
        out.append(np.diff(values, axis=axis)[pairs])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    magnitude, phase, te_s, affine = load_echoes(args.data)
    vsz = voxel_size_from_affine(affine)
    print(f"data: {magnitude.shape} at {np.round(vsz, 3)} mm, TE {np.round(te_s * 1e3, 1)} ms")
    failures = []

    t0 = time.perf_counter()
    mask = brain_mask(magnitude[..., 0], vsz)
    fraction = mask.mean()
    print(f"mask: {fraction:.1%} of the field of view ({time.perf_counter() - t0:.2f} s)")
    if fraction < MIN_MASK_FRACTION:
        failures.append(f"mask keeps only {fraction:.1%} of a crop inside the brain")

    t0 = time.perf_counter()
    fit = fit_echo_phase(magnitude, phase, te_s, mask)
    reliable, n_excluded = reliable_phase_mask(fit.wrapped_phase_rad, mask)
    unwrapped = laplacian_unwrap(fit.wrapped_phase_rad, vsz, mask=reliable)
    dte = fit.reference_dte_s
    print(f"echo fit + unwrap: {time.perf_counter() - t0:.2f} s; reference dTE {dte * 1e3:.1f} ms;"
          f" unreliable voxels (residues, near-pi differences) {n_excluded}"
          f" ({n_excluded / mask.sum():.2%} of the mask);"
          f" reliable mask {reliable.sum() / mask.sum():.1%} of the mask")
    noise = fit.noise_std_hz[mask]
    print(f"frequency noise (Cramer-Rao): median {np.median(noise):.2f} Hz, "
          f"95th percentile {np.percentile(noise, 95):.2f} Hz")

    # Residual wraps: a 2 pi jump over dTE is a field jump of 1/dTE.
    diffs = np.concatenate(neighbour_differences(unwrapped, reliable))
    wrapped_diffs = np.concatenate(neighbour_differences(fit.wrapped_phase_rad, reliable))
    n_wrapped = int((np.abs(wrapped_diffs) > np.pi).sum())
    n_over_pi = int((np.abs(diffs) > np.pi).sum())
    near_2pi = int(((np.abs(diffs) > 1.5 * np.pi) & (np.abs(diffs) < 2.5 * np.pi)).sum())
    print(f"neighbour pairs in the reliable mask: {diffs.size}; wraps in the input "
          f"(|wrapped difference| > pi): {n_wrapped}")
    largest = np.abs(diffs).max()
    print(f"unwrapped: |difference| > pi: {n_over_pi}; in [1.5 pi, 2.5 pi]: {near_2pi}; "
          f"largest {largest:.2f} rad = {largest / (2 * np.pi * dte):.1f} Hz"
          f" (a wrap would be {1 / dte:.0f} Hz)")
    edges = np.array([0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5]) * np.pi
    hist, _ = np.histogram(np.abs(diffs), bins=np.append(edges, np.inf))
    labels = [f"{a / np.pi:g}-{b / np.pi:g} pi" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f">{edges[-1] / np.pi:g} pi")
    print("histogram of |unwrapped difference|: " +
          ", ".join(f"{label}: {count}" for label, count in zip(labels, hist, strict=True)))
    if n_over_pi:
        failures.append(f"{n_over_pi} neighbour differences above pi remain after unwrapping")
    # The echo fit is consistent with every echo: the per-echo residual stays small.
    t = te_s - te_s[0]
    model = fit.phase_at_te1_rad[..., None] + fit.frequency_rad_per_s[..., None] * t
    residual = np.angle(np.exp(1j * (phase - model)))[mask]
    print("echo fit residual, median |rad| per echo: " +
          ", ".join(f"{v:.3f}" for v in np.median(np.abs(residual), axis=0)))

    field_hz = unwrapped / (2 * np.pi * dte)
    field_hz = (field_hz - np.median(field_hz[reliable])) * mask
    b0 = b0_direction_from_affine(affine)
    bgremove = {}
    for name, run in [("V-SHARP", lambda: vsharp(field_hz, reliable, vsz)),
                      ("LBV", lambda: lbv(field_hz, reliable, vsz)),
                      ("LBV + refinement (default)", lambda: refine_with_dipole_model(
                          lambda f, m: lbv(f, m, vsz), field_hz, reliable, vsz, b0))]:
        t0 = time.perf_counter()
        local, eroded = run()
        bgremove[name] = {"time_s": time.perf_counter() - t0,
                          "coverage": float(eroded.sum() / mask.sum())}
        print(f"{name}: {time.perf_counter() - t0:.2f} s, keeps {eroded.sum() / mask.sum():.1%} "
              f"of the mask, local field {np.percentile(local[eroded], 1):.1f} to "
              f"{np.percentile(local[eroded], 99):.1f} Hz (1st-99th percentile)")
    print(f"V-SHARP radii: {np.round(default_vsharp_radii_mm(vsz), 2).tolist()} mm")

    write_result("check_romeo", dict(
        shape=list(magnitude.shape), voxel_size_mm=[float(v) for v in vsz],
        te_s=[float(t) for t in te_s], mask_fraction=float(fraction),
        unreliable_voxels=int(n_excluded), reliable_fraction=float(reliable.sum() / mask.sum()),
        wraps_in_input=n_wrapped, differences_over_pi=n_over_pi, near_2pi=near_2pi,
        largest_difference_rad=float(largest), wrap_hz=float(1 / dte),
        largest_difference_hz=float(largest / (2 * np.pi * dte)),
        noise_median_hz=float(np.median(noise)),
        fit_residual_median_rad=[float(v) for v in np.median(np.abs(residual), axis=0)],
        bgremove=bgremove, failures=failures, passed=not failures),
        command="python benchmarks/check_romeo.py",
        generator="real data: ../shared/data/romeo_small (7T multi-echo crop, ROMEO.jl test "
        "data)")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("PASS: no residual 2 pi jumps inside the mask")
    return 0


if __name__ == "__main__":
    sys.exit(main())
