"""One realistic 1 mm, 5-echo participant: wall time, peak memory and each stage against its floor.

    python benchmarks/bench_participant.py [--inversion nsidl] [--bids DIR] [--no-floors]
        [--name NAME -- QSMFLOW_OPTION ...]

The participant is BrainWeb test subject 18, straight, 3T, TE 5-25 ms, simulated by
``qsmflow.simulation.wholehead`` (``scripts/make_wholehead_phantoms.py``) unless ``--bids``
names another dataset. ``qsmflow BIDS OUT participant`` runs with its default settings
(all cores, half of them per node); peak RSS is sampled every 0.1 s, for the largest single
process and for the sum of the process tree.

Each stage's time comes from its Nipype node (start, end). Its floor is:

* FFT-based stages (unwrapping, background removal, inversion): the stage is run again in
  this process on the node's own inputs, counting its full-volume FFTs by shape, kind and
  dtype (scipy.fft and torch.fft); the floor is that count times one FFT of the same size,
  timed here. What is over the floor is everything that is not an FFT.
* registration: the same ``ants.registration`` call on the same images, alone;
* loading: reading the same input files with nibabel as float32.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import chdir
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUBJECT, POSE = "18", "straight"
GENERATOR = (f"qsmflow.simulation.wholehead: BrainWeb subject {SUBJECT} (test split), "
             f"{POSE}, 0.5 mm physics reduced to 1 mm in k-space, 3T, 5 echoes 5-25 ms, SNR 100")
# Node name -> stage, in pipeline order.
STAGES = {"prepare": "load echoes", "mask": "brain mask", "combine": "echo fit",
          "register_atlas": "atlas registration", "unwrap": "unwrapping",
          "bgremove": "background removal", "invert": "inversion", "roi": "ROI table"}


def make_dataset(out: Path) -> Path:
    if not (out / "dataset_description.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_wholehead_phantoms.py"),
                        str(out), "--scan", f"{SUBJECT}:{POSE}", "--voxel-size-mm", "1"],
                       check=True)
    return out


def run_participant(bids: Path, out: Path, work: Path, inversion: str,
                    options: list[str]) -> dict:
    command = [str(Path(sys.executable).parent / "qsmflow"), str(bids), str(out),
               "participant", "-w", str(work), "--inversion", inversion, *options]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    parent = psutil.Process(process.pid)
    peak_total = peak_single = 0.0
    while process.poll() is None:
        try:
            rss = [p.memory_info().rss / 1e9 for p in [parent] + parent.children(recursive=True)]
            peak_total, peak_single = max(peak_total, sum(rss)), max(peak_single, max(rss))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    output = process.stdout.read()
    if process.returncode:
        print(output)
        raise SystemExit(f"qsmflow failed with exit {process.returncode}")
    return {"wall_s": wall, "peak_rss_total_gb": peak_total,
            "peak_rss_largest_process_gb": peak_single, "command": " ".join(command[1:])}


def node_results(work: Path) -> dict:
    """``{node name: nipype result}`` of every node of the run (inputs and runtime)."""
    from nipype.utils.filemanip import loadpkl

    results = {}
    for path in glob.glob(str(work / "**" / "result_*.pklz"), recursive=True):
        result = loadpkl(path)
        if getattr(result, "runtime", None) is not None and hasattr(result.runtime,
                                                                     "startTime"):
            node = Path(path).parent
            run = next((p.name for p in node.parents if p.name.startswith("sub_")), "")
            # One participant: the node's name; several: "<run workflow>/<node>".
            results[(run, node.name)] = result
    if len({run for run, _ in results}) == 1:
        return {name: r for (_, name), r in results.items()}
    return {f"{run}/{name}": r for (run, name), r in results.items()}


def stage_times(results: dict) -> dict:
    starts = {n: r.runtime.startTime for n, r in results.items()}
    origin = min(_seconds(s) for s in starts.values())
    return {STAGES.get(n, n): {"start_s": _seconds(r.runtime.startTime) - origin,
                        "end_s": _seconds(r.runtime.endTime) - origin,
                        "duration_s": float(r.runtime.duration)}
            for n, r in sorted(results.items(), key=lambda item: _seconds(
                item[1].runtime.startTime))}


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


class FFTCounter:
    """Count full-volume FFT calls of scipy.fft and torch.fft by (kind, shape, dtype)."""

    KINDS = ("rfftn", "irfftn", "fftn", "ifftn", "dctn", "idctn")

    def __init__(self):
        self.calls = Counter()
        self._saved, self._replay = [], {}

    def __enter__(self):
        import scipy.fft
        import torch

        for module in (scipy.fft, torch.fft):
            for kind in self.KINDS:
                if hasattr(module, kind):
                    original = getattr(module, kind)
                    self._saved.append((module, kind, original))
                    setattr(module, kind, self._counting(module, kind, original))
        return self

    def _counting(self, module, kind, original):
        def wrapper(x, *args, **kwargs):
            # Replayed later with zeros of the same input shape and dtype, same arguments.
            key = (module.__name__, kind, tuple(x.shape), str(x.dtype),
                   repr(args), repr(sorted(kwargs.items())))
            if key not in self._replay:
                self._replay[key] = (original, x.shape, x.dtype, args, kwargs)
            self.calls[key] += 1
            return original(x, *args, **kwargs)
        return wrapper

    def __exit__(self, *exc):
        for module, kind, original in self._saved:
            setattr(module, kind, original)

    def floor_s(self, n_threads: int) -> float:
        """The counted FFTs' time: each distinct call timed once here (after a warm-up
        that plans it) times its count, with the stage's thread count."""
        import scipy.fft
        import torch

        torch.set_num_threads(n_threads)
        with scipy.fft.set_workers(n_threads):
            return self._replay_all()

    def _replay_all(self) -> float:
        import torch

        total = 0.0
        for key, count in self.calls.items():
            function, shape, dtype, args, kwargs = self._replay[key]
            x = (torch.zeros(shape, dtype=dtype) if key[0] == "torch.fft"
                 else np.zeros(shape, dtype))
            function(x, *args, **kwargs)
            start = time.perf_counter()
            function(x, *args, **kwargs)
            total += count * (time.perf_counter() - start)
        return total

    def shapes(self) -> list[str]:
        return sorted({f"{k[1]} {k[2]} {k[3]}" for k in self.calls})


def _load(path, dtype=np.float64):
    from qsmflow.interfaces.images import load_data

    return load_data(path, dtype=dtype)


def fft_stage_floors(results: dict, n_threads: int) -> dict:
    """Rerun unwrapping, background removal and inversion on their nodes' inputs."""
    from nipype.interfaces.base import isdefined

    import qsmflow.interfaces.gre as gre
    import qsmflow.interfaces.inversion as inversion

    floors = {}
    for name, interface in (("unwrap", gre.UnwrapPhase), ("bgremove", gre.RemoveBackground),
                            ("invert", inversion.DipoleInversion)):
        if name not in results:
            continue
        inputs = {k: v for k, v in results[name].inputs.items()
                  if isdefined(v) and v is not None and not k.startswith("_")}
        inputs["n_threads"] = n_threads
        with tempfile.TemporaryDirectory() as tmp, chdir(tmp), FFTCounter() as counter:
            start = time.perf_counter()
            interface(**inputs).run()
            rerun = time.perf_counter() - start
        floors[STAGES[name]] = {"floor_s": counter.floor_s(n_threads), "rerun_alone_s": rerun,
                                "ffts": sum(counter.calls.values()),
                                "fft_calls": counter.shapes()}
    return floors


def registration_floor(results: dict, n_threads: int) -> dict:
    """The same registration call (``register_template``: a fresh process with
    ``n_threads`` ITK threads) on the same images, alone (interfaces/atlas.py)."""
    import qsmflow.interfaces.atlas as atlas

    if "register_atlas" not in results:
        return {}
    inputs = results["register_atlas"].inputs
    magnitude, affine = _load(inputs["magnitude"], np.float32)
    mask = _load(inputs["mask"])[0] > 0.5
    with tempfile.TemporaryDirectory() as tmp:
        from qsmflow.interfaces.images import save_like

        fixed = save_like(magnitude[..., 0] * mask, affine, f"{tmp}/f.nii")
        start = time.perf_counter()
        # the node's own thread count (qsmflow.cli.config.lone_run_nthreads)
        atlas.register_template(fixed, inputs["template"],
                                n_threads=inputs.get("n_threads", n_threads),
                                seed=inputs["random_seed"], outprefix=f"{tmp}/r")
        return {"atlas registration": {"floor_s": time.perf_counter() - start}}


def loading_floor(results: dict) -> dict:
    import nibabel as nib

    if "prepare" not in results:
        return {}
    inputs = results["prepare"].inputs
    files = list(inputs.get("magnitude_files") or []) + list(inputs.get("phase_files") or [])
    start = time.perf_counter()
    for path in files:
        np.asarray(nib.load(path).dataobj, dtype=np.float32)
    return {"load echoes": {"floor_s": time.perf_counter() - start, "files": len(files)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inversion", default="nsidl")
    parser.add_argument("--bids", help="dataset to run (default: the test-subject phantom)")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir())
                                                  / "qsmflow_bench_participant"))
    parser.add_argument("--no-floors", action="store_true", help="skip the floor reruns")
    parser.add_argument("--keep-work", help="keep the work and output folders here")
    parser.add_argument("--name", help="result name (default: participant[_INVERSION]); "
                        "required with extra qsmflow options, so that they do not "
                        "overwrite the defaults' result")
    parser.add_argument("qsmflow_options", nargs="*", metavar="QSMFLOW_OPTION",
                        help="more options for qsmflow, after --, e.g. -- --omp-nthreads 1")
    args = parser.parse_args(argv)
    if args.qsmflow_options and not args.name:
        parser.error("extra qsmflow options need --name")
    bids = Path(args.bids) if args.bids else make_dataset(Path(args.data_dir) / "bids")
    # The floors run with the threads a node had: --omp-nthreads, else qsmflow's default.
    from qsmflow.cli.config import default_omp_nthreads

    options = args.qsmflow_options
    n_threads = (int(options[options.index("--omp-nthreads") + 1])
                 if "--omp-nthreads" in options else default_omp_nthreads(psutil.cpu_count()))
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep_work or scratch
        run = run_participant(bids, Path(tmp) / "out", Path(tmp) / "work", args.inversion,
                              args.qsmflow_options)
        results = node_results(Path(tmp) / "work")
        stages = stage_times(results)
        floors = {} if args.no_floors else {**loading_floor(results),
                                            **fft_stage_floors(results, n_threads),
                                            **registration_floor(results, n_threads)}
    for stage, floor in floors.items():
        stages.setdefault(stage, {}).update(floor)
    print(f"participant ({args.inversion}): wall {run['wall_s']:.1f} s, peak RSS "
          f"{run['peak_rss_largest_process_gb']:.2f} GB (largest process), "
          f"{run['peak_rss_total_gb']:.2f} GB (all); machine: {machine()}")
    print(f"{'stage':<22}{'start':>8}{'end':>8}{'time':>8}{'floor':>8}{'over':>8}")
    for stage, t in stages.items():
        floor = t.get("floor_s")
        over = f"{t['duration_s'] / floor:7.1f}x" if floor else "       -"
        print(f"{stage:<22}{t.get('start_s', 0):8.1f}{t.get('end_s', 0):8.1f}"
              f"{t.get('duration_s', 0):8.1f}{floor or 0:8.1f}{over}")
    name = args.name or ("participant" if args.inversion == "nsidl"
                         else f"participant_{args.inversion}")
    command = "python benchmarks/bench_participant.py" + (
        "" if args.inversion == "nsidl" else f" --inversion {args.inversion}")
    if args.name:
        command += f" --name {args.name}"
    if args.qsmflow_options:
        command += " -- " + " ".join(args.qsmflow_options)
    write_result(name, {"inversion": args.inversion, **run, "stages": stages},
                 command=command,
                 generator=GENERATOR if not args.bids else f"--bids {args.bids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
