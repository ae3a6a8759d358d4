"""A 1 mm copy of bids_examples/sub-01, for measuring the nodes' memory and time at the
resolution of a typical clinical QSM protocol (docs/hpc.md).

    python tests/hpc/make_1mm_example.py OUT_BIDS_DIR [--matrix 224 256 176]

Each echo is upsampled from 2 mm to 1 mm through its real and imaginary parts (never
through the wrapped phase), then zero-padded to ``--matrix`` (default 224 x 256 x 176 =
10.1 M voxels, a whole-head 1 mm field of view). Phase is written back in the example's
integer units (-4096..4095). Not a test: the measurement is done by hand, with
workflows/measure_node_resources.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"
PHASE_UNITS_PER_RAD = 4096 / np.pi  # -4096..4095 <-> -pi..pi
UPSAMPLING = 2  # 2 mm -> 1 mm


def _pad_to(array: np.ndarray, matrix) -> tuple[np.ndarray, np.ndarray]:
    before = [max((m - s) // 2, 0) for s, m in zip(array.shape, matrix, strict=True)]
    after = [max(m - s - b, 0) for s, m, b in zip(array.shape, matrix, before, strict=True)]
    return np.pad(array, list(zip(before, after, strict=True))), np.asarray(before)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--matrix", type=int, nargs=3, default=[224, 256, 176])
    args = parser.parse_args(argv)
    anat_in = EXAMPLES / "sub-01" / "anat"
    anat_out = args.out_dir / "sub-01" / "anat"
    anat_out.mkdir(parents=True, exist_ok=True)
    for name in ("dataset_description.json", "participants.tsv", "participants.json"):
        shutil.copy(EXAMPLES / name, args.out_dir / name)
    (args.out_dir / "participants.tsv").write_text(
        "".join(line for i, line in enumerate(
            (EXAMPLES / "participants.tsv").read_text().splitlines(keepends=True))
            if i == 0 or line.startswith("sub-01")))
    for echo in (1, 2, 3):
        stem = f"sub-01_echo-{echo}_part-"
        mag_img = nib.load(anat_in / f"{stem}mag_MEGRE.nii.gz")
        phase_img = nib.load(anat_in / f"{stem}phase_MEGRE.nii.gz")
        mag = np.asarray(mag_img.dataobj, np.float64)
        phase_rad = np.asarray(phase_img.dataobj, np.float64) / PHASE_UNITS_PER_RAD
        signal = mag * np.exp(1j * phase_rad)
        up = (ndimage.zoom(signal.real, UPSAMPLING, order=1)
              + 1j * ndimage.zoom(signal.imag, UPSAMPLING, order=1))
        up, offset_vox = _pad_to(up, args.matrix)
        affine = mag_img.affine.copy()
        affine[:3, :3] /= UPSAMPLING
        # Voxel centres: the first 1 mm voxel sits half a 1 mm voxel before the 2 mm one.
        affine[:3, 3] = mag_img.affine[:3, 3] - affine[:3, :3] @ (np.full(3, 0.5) + offset_vox)
        phase_units = np.clip(np.round(np.angle(up) * PHASE_UNITS_PER_RAD), -4096, 4095)
        for part, data, dtype in (("mag", np.abs(up), np.uint16),
                                  ("phase", phase_units, np.int16)):
            img = nib.Nifti1Image(data.astype(dtype), affine)
            img.header.set_xyzt_units("mm", "sec")
            nib.save(img, anat_out / f"{stem}{part}_MEGRE.nii.gz")
            shutil.copy(anat_in / f"{stem}{part}_MEGRE.json",
                        anat_out / f"{stem}{part}_MEGRE.json")
    print(json.dumps({"out": str(args.out_dir), "matrix": list(up.shape), "voxel_mm": 1.0}))


if __name__ == "__main__":
    main()
