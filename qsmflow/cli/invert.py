"""``qsmflow-invert``: dipole inversion of a local field map you already have.

The same code path as the pipeline's inversion node (qsmflow.inversion).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from qsmflow.bids.errors import QSMInputError, QSMUsageError
from qsmflow.inversion import INVERSION_METHODS

from .config import EXIT_OK, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qsmflow-invert", description=__doc__)
    p.add_argument("--field", required=True, help="local field map (NIfTI)")
    p.add_argument("--mask", required=True, help="mask of valid voxels (NIfTI)")
    p.add_argument("--out", required=True, help="output susceptibility map in ppm (NIfTI)")
    p.add_argument("--method", choices=INVERSION_METHODS, default="nsidl")
    p.add_argument("--weights", help="NSIDL weights (default: shipped)")
    p.add_argument("--weight-map", help="data weight W in [0, 1] (default: 1 in the mask)")
    p.add_argument("--field-units", choices=["ppm", "hz"], default="ppm")
    p.add_argument("--b0", type=float, help="field strength in T (needed for hz, nsidl, ndi)")
    p.add_argument("--te", type=float, help="effective echo time in s (nsidl, ndi)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def run(args) -> Path:
    from qsmflow.algorithms.dipole import b0_direction_from_affine, voxel_size_from_affine
    from qsmflow.constants import hz_per_ppm
    from qsmflow.files import atomic_write_text
    from qsmflow.interfaces.images import load_data, save_like
    from qsmflow.inversion import invert_local_field

    out = Path(args.out)
    if out.exists() and not args.force:
        raise QSMUsageError(f"{out} exists; pass --force to overwrite it.")
    if args.field_units == "hz" and args.b0 is None:
        raise QSMUsageError("--field-units hz needs --b0 (tesla) to convert to ppm.")
    if args.method in ("nsidl", "ndi") and (args.b0 is None or args.te is None):
        raise QSMUsageError(f"--method {args.method} models the phase: give --b0 (T) and --te "
                            "(s), the effective (e.g. mean) echo time of the field map.")
    if args.te is not None and not 0 < args.te < 0.2:
        raise QSMUsageError(f"--te {args.te} is not an echo time in seconds.")
    field, affine = load_data(args.field)
    mask_data, mask_affine = load_data(args.mask)
    if field.shape[:3] != mask_data.shape[:3] or not np.allclose(affine, mask_affine, atol=1e-3):
        raise QSMInputError(f"{args.mask} is not on the grid of {args.field}.")
    if field.ndim != 3:
        raise QSMInputError(f"{args.field}: expected a 3-D field map, got shape {field.shape}.")
    field = np.nan_to_num(field)
    mask = mask_data > 0.5
    weight = load_data(args.weight_map)[0] if args.weight_map else None
    field_ppm = field / hz_per_ppm(args.b0) if args.field_units == "hz" else field
    result = invert_local_field(field_ppm, mask, voxel_size_from_affine(affine),
                                b0_direction_from_affine(affine), method=args.method,
                                b0_t=args.b0 or 3.0, te_s=args.te or 0.02, weight=weight,
                                weights_path=args.weights, device=args.device,
                                n_threads=args.threads)
    save_like(result.chi_ppm, affine, out)
    sidecar = {"Units": "ppm", "DipoleInversionMethod": result.method,
               "B0DirectionVoxel": b0_direction_from_affine(affine).tolist(),
               "Sources": [str(Path(args.field).resolve())]}
    if result.weights_sha256:
        sidecar["NSIDLWeightsSha256"] = result.weights_sha256
    atomic_write_text(out.with_name(out.name.split(".")[0] + ".json"),
                      json.dumps(sidecar, indent=2) + "\n")
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except (QSMUsageError, QSMInputError, RuntimeError) as err:
        print(f"qsmflow-invert: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
