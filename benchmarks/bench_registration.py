"""Atlas registration + label transfer on a 1 mm simulated head (issue 5 speed target: 90 s).

    python benchmarks/bench_registration.py

The fixed image is the first-echo magnitude of a 1 mm MNI-based phantom (seed 31337, head
rotated and shifted, oblique grid); Dice is against the phantom's own labels.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MNI_PHANTOM_GENERATOR, machine, measure, write_result  # noqa: E402

from qsmflow.atlases import default_atlas  # noqa: E402
from qsmflow.interfaces.atlas import RegisterAtlas  # noqa: E402
from qsmflow.simulation.anatomy import deepgm_labels  # noqa: E402
from qsmflow.simulation.phantom import acquire, build_head_model, rigid_pose  # noqa: E402


def main() -> int:
    shape = (180, 216, 180)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 + np.array([0, -18, 14])
    affine = rigid_pose((10.0, -6.0, 0.0)) @ affine
    model = build_head_model(np.random.default_rng(31337), n_veins=20)
    acq = acquire(model, affine, shape, te_s=(0.005,), head_pose=rigid_pose((3, -2, 4), (1, -2, 2)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        nib.save(nib.Nifti1Image(acq.magnitude.astype(np.float32), affine), tmp / "mag.nii.gz")
        nib.save(nib.Nifti1Image(acq.brain_mask.astype(np.uint8), affine), tmp / "mask.nii.gz")
        atlas = default_atlas(tmp / "atlas")
        import os

        os.chdir(tmp)
        with measure() as cost:
            result = RegisterAtlas(magnitude=str(tmp / "mag.nii.gz"),
                                   mask=str(tmp / "mask.nii.gz"), template=str(atlas.template),
                                   labels=str(atlas.labels), n_threads=2).run()
        native = np.asarray(nib.load(result.outputs.native_labels).dataobj)
    dice = {}
    for label in deepgm_labels():
        a, b = native == label.index, acq.deepgm == label.index
        dice[label.name] = 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)
    print("Dice:", {k: round(v, 2) for k, v in dice.items()})
    print(f"registration + label transfer, 1 mm {shape}: {cost['wall_s']:.1f} s, peak RSS "
          f"{cost['peak_rss_gb']:.2f} GB, similarity {result.outputs.similarity:.2f}; "
          f"machine: {machine()}")
    write_result("registration", dict(shape=list(shape), wall_s=cost["wall_s"],
                                      peak_rss_gb=cost["peak_rss_gb"],
                                      similarity=float(result.outputs.similarity), dice=dice),
                 command="python benchmarks/bench_registration.py",
                 generator=f"{MNI_PHANTOM_GENERATOR}; seed 31337 (the atlas's own template "
                 "anatomy, so Dice is optimistic)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
