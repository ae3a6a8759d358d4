"""Bad BIDS datasets built on the fly from ``bids_examples/``, and helpers that run
qsmflow on them (in this process or as a separate one) and compare two runs' outputs.

Every builder copies the example data (never its ground truth) into a temporary folder
and then breaks one thing, so each test states exactly what is wrong with its input.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"
TRUTH = EXAMPLES / "derivatives" / "groundtruth"
SIGNED_PHASE_FULL_SCALE = 4096  # the examples store phase as -4096..4094 -> -pi..pi


def copy_examples(dest: Path, subjects=("01", "02")) -> Path:
    """``bids_examples`` minus derivatives and scripts, with only ``subjects``."""
    dest = Path(dest)
    keep = {f"sub-{s}" for s in subjects}
    shutil.copytree(EXAMPLES, dest, ignore=lambda folder, names: [
        n for n in names if n in ("derivatives", "__pycache__") or n.endswith(".py")
        or (n.startswith("sub-") and Path(folder) == EXAMPLES and n not in keep)])
    return dest


def gre_file(bids: Path, sub: str, echo: int | None, part: str, suffix="MEGRE",
             ext=".nii.gz") -> Path:
    stem = f"sub-{sub}" + (f"_echo-{echo}" if echo else "") + f"_part-{part}_{suffix}"
    return Path(bids) / f"sub-{sub}" / "anat" / (stem + ext)


def edit_sidecar(path: Path, **changes) -> None:
    """Set fields of a JSON sidecar; a value of ``None`` removes the field."""
    path = Path(str(path).replace(".nii.gz", ".json"))
    sidecar = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            sidecar.pop(key, None)
        else:
            sidecar[key] = value
    path.write_text(json.dumps(sidecar, indent=2))


def rewrite_nifti(path: Path, data=None, affine=None, dtype=None) -> None:
    """Write ``path`` again with new data, affine or on-disk type (header otherwise kept)."""
    img = nib.load(path)
    data = np.asarray(img.dataobj) if data is None else np.asarray(data)
    affine = img.affine if affine is None else affine
    header = img.header.copy()
    header.set_data_dtype(dtype or data.dtype)
    new = nib.Nifti1Image(data.astype(dtype or data.dtype), affine, header=header)
    new.set_qform(affine, code=1)
    new.set_sform(affine, code=1)
    new.header.set_slope_inter(1.0, 0.0)
    Path(path).unlink()
    nib.save(new, path)


def load_array(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def decimate_examples(dest: Path, *, factor: int = 2) -> tuple[Path, Path]:
    """A coarse copy (every ``factor``-th voxel) of the examples and their ROI labels.

    At 4 mm the 2 mm whole heads (about 97x112x88) become about 49x56x44: the same heads,
    echoes and oblique affine, eight times fewer voxels, so that whole pipeline runs take
    seconds.
    Returns ``(bids_dir, roi_labels_dir)``.
    """
    dest = Path(dest)
    bids = copy_examples(dest / "bids_4mm")
    labels = dest / "labels_4mm"
    shutil.copytree(TRUTH, labels, ignore=shutil.ignore_patterns("*Chimap*", "*mask*"))
    for path in list(bids.rglob("*.nii.gz")) + list(labels.rglob("*.nii.gz")):
        img = nib.load(path)
        data = np.asarray(img.dataobj)[::factor, ::factor, ::factor]
        affine = img.affine.copy()
        affine[:3, :3] *= factor
        rewrite_nifti(path, data=data, affine=affine, dtype=img.get_data_dtype())
    return bids, labels


def add_subject(bids: Path, source: str, new: str, labels: Path | None = None) -> None:
    """Copy participant ``source`` as ``new`` (files renamed), and its ROI labels too."""
    for root in [bids] + ([labels] if labels else []):
        src = Path(root) / f"sub-{source}"
        dst = Path(root) / f"sub-{new}"
        shutil.copytree(src, dst)
        for path in sorted(dst.rglob(f"sub-{source}_*")):
            path.rename(path.with_name(path.name.replace(f"sub-{source}_", f"sub-{new}_")))
    tsv = Path(bids) / "participants.tsv"
    lines = tsv.read_text().splitlines()
    row = next(line for line in lines if line.startswith(f"sub-{source}\t"))
    lines.append(row.replace(f"sub-{source}", f"sub-{new}", 1))
    tsv.write_text("\n".join(lines) + "\n")


def checksums(root: Path) -> dict:
    """sha256 and mode of every file and folder below ``root``."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(root))] = (digest, stat.st_mode, stat.st_mtime_ns)
    return out


@dataclass
class RunResult:
    """What one ``qsmflow`` command gave: exit code, console output and run summary."""

    code: int
    stdout: str
    stderr: str
    summary: dict | None


def latest_summary(out_dir: Path) -> dict | None:
    files = sorted(Path(out_dir).glob("logs/qsmflow_*_summary.json"),
                   key=lambda p: p.stat().st_mtime_ns)
    return json.loads(files[-1].read_text()) if files else None


def run_qsmflow(bids: Path, out: Path, *options, work: Path | None = None) -> RunResult:
    """``qsmflow BIDS OUT participant [options]`` in this process, output captured.

    The default work directory sits beside ``out``; ``--inversion tkd`` is added unless
    another inversion is given (the NSIDL weights may still be training).
    """
    from qsmflow.cli.run import main

    args = [str(bids), str(out), "participant", "-w", str(work or Path(out).parent / "work")]
    args += [str(o) for o in options]
    args += _test_defaults(args)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(args)
    summary = latest_summary(out) if Path(out).is_dir() else None
    return RunResult(code, stdout.getvalue(), stderr.getvalue(), summary)


def assert_one_paragraph(text: str) -> None:
    """An error message for people: no traceback, and short."""
    assert "Traceback" not in text
    assert 0 < len(text.strip()) < 1500, text


# --- quirks of real datasets, applied to one participant ---------------------------------

def phase_files(bids: Path, sub: str) -> list[Path]:
    return sorted((Path(bids) / f"sub-{sub}" / "anat").glob("*_part-phase_*.nii*"))


def phase_to_unsigned_units(bids: Path, sub: str) -> None:
    """Store the phase as 0..4095 (uint16), the other common scanner convention."""
    for path in phase_files(bids, sub):
        signed = load_array(path).astype(np.float64)  # -4096..4094 -> -pi..pi
        unsigned = np.clip(np.round(signed / 2 + 2048), 0, 4095)  # 0..4095 -> -pi..pi
        rewrite_nifti(path, data=unsigned, dtype=np.uint16)


def phase_to_integer_degrees(bids: Path, sub: str) -> None:
    """Store the phase as whole degrees, -180..180 (int16), as some converters write it."""
    for path in phase_files(bids, sub):
        degrees = np.round(load_array(path) / SIGNED_PHASE_FULL_SCALE * 180.0)
        rewrite_nifti(path, data=degrees, dtype=np.int16)


def phase_to_float_radians(bids: Path, sub: str) -> None:
    for path in phase_files(bids, sub):
        radians = load_array(path) / SIGNED_PHASE_FULL_SCALE * np.pi
        rewrite_nifti(path, data=radians, dtype=np.float32)


def add_nonfinite_voxels(bids: Path, sub: str) -> int:
    """NaN in a block of the first echo's phase and magnitude, Inf in a corner; returns
    the number of non-finite voxels per file."""
    count = 0
    for part in ("phase", "mag"):
        path = gre_file(bids, sub, 1, part)
        data = load_array(path).astype(np.float32)
        if part == "phase":
            data = data / SIGNED_PHASE_FULL_SCALE * np.pi
        centre = tuple(n // 2 for n in data.shape)
        block = tuple(slice(c - 2, c + 2) for c in centre)
        data[block] = np.nan
        data[0, 0, 0] = np.inf
        data[-1, -1, -1] = -np.inf
        count = int(np.size(data) - np.isfinite(data).sum())
        rewrite_nifti(path, data=data, dtype=np.float32)
    return count


def keep_single_echo(bids: Path, sub: str, echo: int = 1) -> None:
    """Only one echo, named as a single-echo ``T2starw`` run (no echo entity)."""
    anat = Path(bids) / f"sub-{sub}" / "anat"
    for path in sorted(anat.glob("*_echo-*")):
        if f"_echo-{echo}_" in path.name:
            name = path.name.replace(f"_echo-{echo}_", "_").replace("_MEGRE", "_T2starw")
            path.rename(anat / name)
        else:
            path.unlink()


def edit_all_sidecars(bids: Path, sub: str, **changes) -> None:
    for path in sorted((Path(bids) / f"sub-{sub}" / "anat").glob("*.json")):
        edit_sidecar(path, **changes)


def signal_in_one_voxel(bids: Path, sub: str) -> None:
    """Every magnitude echo zero but for one voxel: it passes the header checks, yet no
    brain mask can be made from it (a failure during processing, not before)."""
    for path in sorted((Path(bids) / f"sub-{sub}" / "anat").glob("*_part-mag_*.nii*")):
        data = np.zeros_like(load_array(path))
        data[tuple(n // 2 for n in data.shape)] = 1000
        rewrite_nifti(path, data=data)


# --- comparing two runs' derivatives ----------------------------------------------------

# Sidecar keys that name this run's own provenance record (a time stamp and PID).
RUN_SPECIFIC_KEYS = ("QsmflowProvenance",)


def derivative_files(out: Path, sub: str) -> list[str]:
    """The participant's derivatives (``anat/``, ``fmap/``; report figures are not
    compared)."""
    folder = Path(out) / f"sub-{sub}"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.parent.name in ("anat", "fmap"))


def assert_same_derivatives(out_a: Path, out_b: Path, sub: str) -> int:
    """Bitwise-equal data of every NIfTI (and equal affines), equal tables, and equal
    sidecars but for ``RUN_SPECIFIC_KEYS``. Returns the number of files compared."""
    files = derivative_files(out_a, sub)
    assert files and files == derivative_files(out_b, sub)
    for name in files:
        a, b = Path(out_a) / f"sub-{sub}" / name, Path(out_b) / f"sub-{sub}" / name
        if name.endswith((".nii", ".nii.gz")):
            img_a, img_b = nib.load(a), nib.load(b)
            assert img_a.get_data_dtype() == img_b.get_data_dtype(), name
            np.testing.assert_array_equal(np.asarray(img_a.dataobj),
                                          np.asarray(img_b.dataobj), err_msg=name)
            np.testing.assert_array_equal(img_a.affine, img_b.affine, err_msg=name)
        elif name.endswith(".json"):
            side_a, side_b = (json.loads(p.read_text()) for p in (a, b))
            for key in RUN_SPECIFIC_KEYS:
                side_a.pop(key, None), side_b.pop(key, None)
            assert side_a == side_b, name
        else:
            assert a.read_bytes() == b.read_bytes(), name
    return len(files)


# --- qsmflow as a separate process ------------------------------------------------------

def qsmflow_command(bids: Path, out: Path, *options, work: Path) -> list[str]:
    """The ``qsmflow BIDS OUT participant`` command line, run by this Python."""
    args = [sys.executable, "-m", "qsmflow.cli.run", str(bids), str(out), "participant",
            "-w", str(work), *(str(o) for o in options)]
    return args + _test_defaults(args)


def _test_defaults(args: list[str]) -> list[str]:
    """Options these tests add unless they give their own: TKD and the threshold mask,
    both fast (the threshold takes in the scalp of these whole heads; deepbet, the
    default, is tested on them in tests/simulation/test_example_dataset.py and
    tests/test_end_to_end.py); the tests here are about failures and files, not
    accuracy."""
    extra = [] if "--inversion" in args else ["--inversion", "tkd"]
    mask_options = ("--mask-method", "--brain-mask-dir")
    if not any(option in args for option in mask_options):
        extra += ["--mask-method", "threshold"]
    return extra


def start_qsmflow(command: list[str], log: Path) -> subprocess.Popen:
    """Start ``command`` in a session of its own (so that its whole process group, the
    workers included, can be signalled), with stdout and stderr to ``log``.out/.err."""
    log = Path(log)
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        # SIGINT back to its default in the child: a test runner started from a
        # non-interactive shell's background job inherits it ignored, and Python keeps an
        # ignored SIGINT ignored, so Ctrl-C (SIGINT) would never reach qsmflow.
        return subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(condition, process: subprocess.Popen, *, timeout_s: float, what: str,
             poll_s: float = 0.05) -> None:
    """Poll ``condition()`` until true; fail if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"qsmflow ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(poll_s)
