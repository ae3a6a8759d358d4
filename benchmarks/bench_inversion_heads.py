"""Dipole inversion alone, from the true local field in the true mask, on the test heads.

    python benchmarks/bench_inversion_heads.py [--scans 18:straight 20:oblique]
        [--methods tkd cfl2 ndi tv rts nsidl] [--nsidl-weights PATH] [--no-geometric]
        [--cache-dir /tmp/qsmflow_heads]

(writes ``benchmarks/results/inversion_heads.json``)

Whole heads: ``qsmflow.simulation.wholehead`` on the *test* subjects only (BrainWeb 18
straight, 20 oblique; 1 mm, 3T, 5 echoes 5-25 ms, seed 0): the local field of the brain's
sources and chi, both simulated on the 0.5 mm grid with the continuous dipole kernel and
reduced in k-space. Every method inverts that field (ppm) in the true brain mask with its
default settings, which ``benchmarks/tune_classical.py`` chose on tuning head 04; NSIDL
runs with the weights of ``--nsidl-weights`` (default: the shipped v1). The nonlinear
methods (NDI, NSIDL) model the phase at the mean echo time, 15 ms. Each method runs in
its own process, so its wall time and peak RSS are its own (2 FFT threads).

Geometric phantom: spheres, capped cylinders along and across B0 and a 1 ppm hemorrhage in
an otherwise empty spherical mask, on a 96^3 1 mm grid; chi drawn analytically on a 3x
finer grid and its field computed there with the continuous kernel, both reduced in
k-space (the same reduction as the whole heads, not the inversions' discrete kernel).

Metrics (``qsmflow.algorithms.metrics``): NRMSE, HFEN and XSIM in the mask, both maps
referenced to their mean in the mask (the mean of chi is not determined by the field).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, write_result  # noqa: E402

from qsmflow.algorithms.metrics import hfen_percent, nrmse_percent, xsim  # noqa: E402
from qsmflow.files import atomic_write  # noqa: E402

B0_T = 3.0
METHODS = ("tkd", "cfl2", "ndi", "tv", "rts", "nsidl")
DEFAULT_WEIGHTS = REPO / "qsmflow" / "data" / "nsidl_v1.pt"
HEADS_DIR = REPO.parent / "shared" / "data" / "heads"
ANATOMY_CACHE = Path.home() / ".cache" / "qsmflow"
GENERATOR = ("qsmflow.simulation.wholehead (BrainWeb subjects 18, 20; test split): BrainWeb "
             "crisp heads 0.5 mm + Colin27 cavities + AAL3/SUIT nuclei; local field and chi "
             "from the continuous dipole kernel at 0.5 mm, reduced in k-space to 1 mm; 3T, "
             "seed 0. Geometric phantom: analytic spheres, cylinders and a 1 ppm hemorrhage "
             "drawn at 1/3 mm, continuous-kernel field, reduced in k-space to 1 mm")
GEOMETRIC_SHAPE = (96, 96, 96)
GEOMETRIC_FACTOR = 3


def pose_of(name: str):
    from qsmflow.simulation.wholehead import POSES_DEG

    return POSES_DEG[name] if name in POSES_DEG else tuple(float(a) for a in name.split(","))


def head_truth(subject: str, pose: str, *, cache_dir: Path) -> Path:
    """Simulate one 1 mm head (once) and keep what the inversion needs as an .npz."""
    path = Path(cache_dir) / f"sub{subject}_{pose.replace(',', '_')}_1mm.npz"
    if path.is_file():
        return path
    from qsmflow.constants import hz_per_ppm
    from qsmflow.simulation.wholehead import b0_direction_voxel, simulate
    from qsmflow.simulation.wholehead_anatomy import build_anatomy

    anatomy = build_anatomy(HEADS_DIR, subject, cache_dir=ANATOMY_CACHE)
    scan = simulate(anatomy, b0_t=B0_T, voxel_size_mm=1.0, pose_deg=pose_of(pose), seed=0,
                    workers=2)
    atomic_write(path, lambda tmp: np.savez_compressed(
        tmp, local_field_ppm=(scan.local_field_hz / hz_per_ppm(B0_T)).astype(np.float32),
        mask=scan.brain_mask, chi_ppm=scan.chi_ppm.astype(np.float32),
        voxel_size_mm=np.linalg.norm(scan.affine[:3, :3], axis=0),
        b0_direction=b0_direction_voxel(scan.affine), te_s=np.asarray(scan.te_s)))
    return path


def geometric_truth(*, cache_dir: Path) -> Path:
    """Spheres, cylinders and a 1 ppm hemorrhage in an empty spherical mask (B0 along z)."""
    path = Path(cache_dir) / "geometric_1mm.npz"
    if path.is_file():
        return path
    from qsmflow.simulation.wholehead_kspace import continuous_dipole_field_ppm, kspace_reduce

    f = GEOMETRIC_FACTOR
    fine_mm = 1.0 / f
    grid = (np.indices([n * f for n in GEOMETRIC_SHAPE], dtype=np.float32) * fine_mm
            - np.reshape([n / 2 for n in GEOMETRIC_SHAPE], (3, 1, 1, 1)).astype(np.float32))
    chi = np.zeros(grid.shape[1:], np.float32)
    spheres = [((-15, 12, 8), 6.0, 0.15), ((14, -10, -12), 4.0, -0.10),
               ((10, 18, 16), 3.0, 0.30), ((-18, -16, -6), 8.0, 1.0)]  # the last: hemorrhage
    for centre, radius, value in spheres:
        chi[((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0) <= radius**2] = value
    cylinders = [((0, 0, 0), (0, 0, 1), 3.0, 15.0, 0.30),  # along B0
                 ((0, -24, 18), (1, 0, 0), 2.5, 12.0, 0.30),  # across B0
                 ((22, 10, -4), (0, 1, 1), 2.0, 12.0, -0.10)]  # at 45 degrees
    for centre, axis, radius, half_length, value in cylinders:
        axis = np.asarray(axis, np.float32) / np.linalg.norm(axis)
        d = grid - np.reshape(centre, (3, 1, 1, 1)).astype(np.float32)
        along = np.einsum("i,i...->...", axis, d)
        radial2 = (d**2).sum(0) - along**2
        chi[(np.abs(along) <= half_length) & (radial2 <= radius**2)] = value
    field = continuous_dipole_field_ppm(chi, fine_mm, (0.0, 0.0, 1.0), pad_vox=48 * f)
    coarse = grid[:, ::f, ::f, ::f]
    mask = (coarse**2).sum(0) <= 40.0**2
    atomic_write(path, lambda tmp: np.savez_compressed(
        tmp, local_field_ppm=kspace_reduce(field, f) * mask, mask=mask,
        chi_ppm=kspace_reduce(chi, f) * mask, voxel_size_mm=np.ones(3),
        b0_direction=np.array([0.0, 0.0, 1.0]), te_s=np.array([0.015])))
    return path


def merge_result(name: str, update, *, command: str, generator: str) -> None:
    """``update(results)`` on the recorded ``results/<name>.json`` (or ``{}``), under a lock,
    so that runs of single methods in parallel processes add to one result; the commands
    of every run that contributed are kept."""
    import fcntl

    from common import RESULTS_DIR

    path = RESULTS_DIR / f"{name}.json"
    with open(RESULTS_DIR / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(path.read_text()) if path.is_file() else {}
        results = record.get("results", {}) if record.get("generator") == generator else {}
        commands = [c for c in record.get("command", "").split(" ; ") if c and c != command]
        update(results)
        write_result(name, results, command=" ; ".join([*commands, command]),
                     generator=generator)


def scores(estimate, truth, mask) -> dict:
    """NRMSE (%), HFEN (%) and XSIM in ``mask``, both maps referenced to their mean there."""
    mask = np.asarray(mask, bool)
    est = np.where(mask, estimate - estimate[mask].mean(), 0.0)
    ref = np.where(mask, truth - truth[mask].mean(), 0.0)
    return {"nrmse_percent": nrmse_percent(est, ref, mask),
            "hfen_percent": hfen_percent(est, ref, mask), "xsim": xsim(est, ref, mask)}


def invert(data, method: str, *, nsidl_weights=None, **kwargs) -> np.ndarray:
    """The pipeline's own inversion (``qsmflow.inversion``) of a truth file's field."""
    from qsmflow.inversion import invert_local_field

    return invert_local_field(
        data["local_field_ppm"].astype(np.float64), data["mask"], data["voxel_size_mm"],
        data["b0_direction"], method=method, b0_t=B0_T, te_s=float(np.mean(data["te_s"])),
        weights_path=nsidl_weights if method == "nsidl" else None, n_threads=2,
        **kwargs).chi_ppm


def run_one(truth_file: Path, method: str, nsidl_weights) -> dict:
    """One method on one truth file, in this process: time, peak RSS and the scores."""
    data = dict(np.load(truth_file))
    with measure() as m:
        chi = invert(data, method, nsidl_weights=nsidl_weights)
    # The machine may be shared: the 1-minute load average says how much its time is worth.
    return {**scores(chi, data["chi_ppm"], data["mask"]), "wall_s": m["wall_s"],
            "peak_rss_gb": m["peak_rss_gb"], "load_average": os.getloadavg()[0]}


def run_isolated(truth_file: Path, method: str, nsidl_weights) -> dict:
    """:func:`run_one` in a fresh process, so that the peak RSS is the method's own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--one", str(truth_file), method, str(out)]
        if nsidl_weights:
            cmd += ["--nsidl-weights", str(nsidl_weights)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", nargs="*", default=["18:straight", "20:oblique"],
                   metavar="SUBJECT:POSE")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--nsidl-weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--no-geometric", action="store_true")
    p.add_argument("--cache-dir", default="/tmp/qsmflow_heads")
    p.add_argument("--name", default="inversion_heads", help="result name (inversion_heads*)")
    p.add_argument("--one", nargs=3, metavar=("TRUTH", "METHOD", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        truth_file, method, out = args.one
        Path(out).write_text(json.dumps(run_one(Path(truth_file), method, args.nsidl_weights)))
        return 0
    from qsmflow.simulation.wholehead import TEST_SUBJECTS

    cache = Path(args.cache_dir)
    targets = {}
    for item in args.scans:
        subject, _, pose = item.partition(":")
        if subject not in TEST_SUBJECTS:
            p.error(f"--scans {item}: {subject} is not a test subject {TEST_SUBJECTS}")
        targets[f"sub-{subject} {pose}"] = head_truth(subject, pose, cache_dir=cache)
    if not args.no_geometric:
        targets["geometric"] = geometric_truth(cache_dir=cache)
    weights = Path(args.nsidl_weights)
    command = "python benchmarks/bench_inversion_heads.py " + " ".join(argv or sys.argv[1:])
    for label, truth_file in targets.items():
        for method in args.methods:
            row = run_isolated(truth_file, method, args.nsidl_weights)

            def add(results, label=label, method=method, row=row):
                results.setdefault(label, {})[method] = row
                if method == "nsidl":
                    results["nsidl_weights"] = (weights.name if weights.is_relative_to(REPO)
                                                else str(weights))

            merge_result(args.name, add, command=command.strip(), generator=GENERATOR)
            print(f"{label:22s} {method:6s} NRMSE {row['nrmse_percent']:5.1f} %  HFEN "
                  f"{row['hfen_percent']:5.1f} %  XSIM {row['xsim']:.3f}  {row['wall_s']:6.1f} s"
                  f"  {row['peak_rss_gb']:.2f} GB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
