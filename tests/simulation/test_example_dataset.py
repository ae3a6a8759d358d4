"""The bundled example dataset (bids_examples/, made from the whole-head phantom): what it
holds, that its generator writes exactly its metadata, and the default brain mask on its
bright-scalp heads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmflow.algorithms.dipole import b0_direction_from_affine
from qsmflow.simulation import example_dataset as ex
from qsmflow.simulation import wholehead as wh
from qsmflow.simulation import wholehead_anatomy as wa

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"
TRUTH = EXAMPLES / "derivatives" / "groundtruth"
MAX_BYTES = 10 * 2**20  # the examples ship in the repository: 10 MB at most


def _anat(sub: str, name: str, root: Path = EXAMPLES) -> Path:
    return root / f"sub-{sub}" / "anat" / f"sub-{sub}_{name}.nii.gz"


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_examples_are_small_test_heads_in_two_poses():
    files = [p for p in EXAMPLES.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    table = pd.read_csv(EXAMPLES / "participants.tsv", sep="\t", dtype=str)
    assert list(table.participant_id) == ["sub-01", "sub-02"]
    assert set(table.brainweb_subject) <= set(wh.TEST_SUBJECTS)  # never tuned on
    assert sorted(table.pose) == ["oblique", "straight"]
    assert sorted(table.group) == ["control", "patient"]
    for sub in ("01", "02"):
        echoes = sorted((EXAMPLES / f"sub-{sub}" / "anat").glob("*_part-phase_MEGRE.nii.gz"))
        assert len(echoes) == len(ex.ECHO_TIMES_S) == 3
        phase = _load(echoes[-1])
        assert phase.dtype == np.int16
        assert phase.min() == -4096 and phase.max() == 4094 and not (phase % 2).any()
        sidecar = json.loads(echoes[-1].with_name(
            echoes[-1].name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["EchoTime"] == ex.ECHO_TIMES_S[-1] and sidecar["Units"] == "arbitrary"


def test_the_oblique_head_has_a_tilted_b0_direction_in_its_affine():
    """The B0 direction from the image's affine (the pipeline's function) equals the one the
    simulation used, recorded in the truth; the oblique pose tilts it by its rotation."""
    for sub in ("01", "02"):
        record = json.loads((TRUTH / f"sub-{sub}" / "anat" / f"sub-{sub}_Chimap.json")
                            .read_text())
        b0 = b0_direction_from_affine(nib.load(_anat(sub, "echo-1_part-mag_MEGRE")).affine)
        np.testing.assert_allclose(b0, record["b0_direction_voxel"], atol=1e-6)
        expected_cos = wh.rotation_matrix(wh.POSES_DEG[record["Pose"]])[2, 2]
        np.testing.assert_allclose(b0[2], expected_cos, atol=1e-6)
    assert np.degrees(np.arccos(expected_cos)) > 15  # sub-02, oblique


def test_metadata_only_writes_the_committed_files(tmp_path):
    """``make_bids_examples.py --metadata-only`` rewrites every non-image file exactly as
    committed, from the simulation record kept in the truth sidecars."""
    ex.write_example_metadata(tmp_path, ex.recorded_metadata(EXAMPLES))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*")
                       if p.is_file() and not p.name.endswith(".nii.gz"))
    assert written == committed
    for rel in written:
        assert (tmp_path / rel).read_bytes() == (EXAMPLES / rel).read_bytes(), rel


def test_crop_to_head_keeps_each_voxel_at_its_place():
    tissue = np.zeros((20, 18, 16), np.uint8)
    tissue[6:11, 4:9, 3:12] = wa.SKIN
    affine = np.array([[0.0, -2.0, 0.0, 30.0], [2.0, 0.0, 0.0, -10.0],
                       [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
    values = np.arange(tissue.size, dtype=np.float32).reshape(tissue.shape)
    scan = wh.WholeHeadScan(affine, values[..., None], values[..., None], (0.01,), 3.0,
                            values, values, values, tissue > 0, tissue.astype(np.int16),
                            tissue)
    cropped = ex.crop_to_head(scan, margin_vox=2)
    assert cropped.tissue.shape == (9, 9, 13)
    for field in dataclasses.fields(scan):
        if field.name not in ("affine", "te_s", "b0_t", "metadata"):
            np.testing.assert_array_equal(getattr(cropped, field.name),
                                          getattr(scan, field.name)[4:13, 2:11, 1:14])
    # Cropped voxel (0, 0, 0) is voxel (4, 2, 1) of the full grid, at the same place.
    np.testing.assert_allclose(cropped.affine @ [0, 0, 0, 1], affine @ [4, 2, 1, 1])
    np.testing.assert_array_equal(cropped.affine[:3, :3], affine[:3, :3])


@pytest.mark.parametrize("sub", ["01", "02"])
def test_default_mask_on_the_bright_scalp_example_heads(sub, example_run):
    """The default brain mask (deepbet + R2* rim removal, from the pipeline's default run
    of ``tests/conftest.py``) on the whole-head phantom, whose scalp fat and marrow are
    brighter than the brain: Dice >= 0.9 with the true brain and the volume within 10%."""
    images = [nib.load(_anat(sub, f"echo-{n}_part-mag_MEGRE")) for n in (1, 2, 3)]
    magnitude = np.stack([img.get_fdata(dtype=np.float32) for img in images], -1)
    brain = _load(_anat(sub, "desc-brain_mask", TRUTH)) > 0
    tissue = _load(_anat(sub, "desc-tissue_dseg", TRUTH))
    fat = tissue == wa.FAT
    # Bright scalp: fat above the brightest 1% of the brain, measured in 57% / 34% of the
    # fat voxels (sub-01 / sub-02; the fat's 90th percentile 1.73 / 1.45x the brain median).
    brightest_brain = np.percentile(magnitude[brain, 0], 99)
    assert np.mean(magnitude[fat, 0] > brightest_brain) > 0.25
    assert np.percentile(magnitude[fat, 0], 90) > 1.3 * np.median(magnitude[brain, 0])
    scalp = np.isin(tissue, (wa.FAT, wa.SKIN, wa.MARROW))
    mask = _load(example_run["out"] / f"sub-{sub}" / "anat" /
                 f"sub-{sub}_desc-brain_mask.nii.gz") > 0
    dice = 2 * np.count_nonzero(mask & brain) / (mask.sum() + brain.sum())
    # Measured: Dice 0.948 / 0.953, volume -1.4% / +5.0%, scalp (fat, skin, marrow) in the
    # mask 0.02% / 0.03% (sub-01 / sub-02).
    assert dice >= 0.9
    assert 0.9 <= mask.sum() / brain.sum() <= 1.1
    assert np.count_nonzero(mask & scalp) < 0.005 * scalp.sum()
