"""Atlas registration recovers known labels; custom atlases are validated."""

import tempfile

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from qsmflow.atlases import custom_atlas, default_atlas
from qsmflow.bids.errors import QSMInputError
from qsmflow.interfaces.atlas import RegisterAtlas
from qsmflow.simulation.phantom import rigid_pose

LARGE_NUCLEI = {"caudate": (1, 2), "putamen": (3, 4), "thalamus": (7, 8)}


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    return default_atlas(tmp_path_factory.mktemp("atlas"))


def _warp_template(atlas, rng, target_affine, shape):
    """Template and labels moved by a known affine and a smooth random deformation."""
    template = nib.load(atlas.template)
    labels = nib.load(atlas.labels)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = target_affine[:3, :3] @ ijk + target_affine[:3, 3:4]
    head = np.linalg.inv(rigid_pose((6, -4, 5), (3, -5, 4)) @ np.diag([1.05, 0.97, 1.02, 1]))
    source = head[:3, :3] @ world + head[:3, 3:4]
    coarse = rng.normal(scale=1.5, size=(3, 5, 5, 5))  # mm, smooth
    displacement = np.stack([ndimage.zoom(c, np.array(shape) / 5, order=3) for c in coarse])
    source = source + displacement.reshape(3, -1)
    vox = np.linalg.inv(template.affine)
    coords = vox[:3, :3] @ source + vox[:3, 3:4]
    moved = ndimage.map_coordinates(template.get_fdata(), coords, order=1).reshape(shape)
    moved_labels = ndimage.map_coordinates(np.asarray(labels.dataobj), coords,
                                           order=0).reshape(shape)
    return moved, moved_labels


def test_registration_recovers_known_labels(atlas, tmp_path, rng, monkeypatch):
    shape = (80, 96, 80)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -np.array(shape) + 1 + np.array([0, -18, 14])
    magnitude, truth = _warp_template(atlas, rng, affine, shape)
    mask = magnitude > 0.05
    nib.save(nib.Nifti1Image(magnitude[..., None].astype(np.float32), affine),
             tmp_path / "mag.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), tmp_path / "mask.nii.gz")
    monkeypatch.chdir(tmp_path)
    # ANTs would put its transforms in the temporary folder and never remove them.
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    result = RegisterAtlas(magnitude=str(tmp_path / "mag.nii.gz"),
                           mask=str(tmp_path / "mask.nii.gz"), template=str(atlas.template),
                           labels=str(atlas.labels), n_threads=2).run()
    native = np.asarray(nib.load(result.outputs.native_labels).dataobj)
    assert native.dtype.kind == "i"  # generic-label interpolation keeps integer labels
    assert set(np.unique(native)) <= set(range(0, 15))
    for roi, ids in LARGE_NUCLEI.items():
        for label in ids:
            a, b = native == label, truth == label
            dice = 2 * (a & b).sum() / (a.sum() + b.sum())
            assert dice >= 0.8, f"{roi} label {label}: Dice {dice:.2f}"
    assert list(system_tmp.iterdir()) == []


def test_custom_atlas_validation(atlas, tmp_path):
    labels = nib.load(atlas.labels)
    good_tsv = tmp_path / "labels.tsv"
    good_tsv.write_text("index\tname\n1\tcaudate_left\n")
    assert custom_atlas(atlas.template, atlas.labels, good_tsv).name == "deepgm_dseg"

    missing = tmp_path / "missing.tsv"
    missing.write_text("index\tname\n1\tcaudate_left\n99\tnothing\n")
    with pytest.raises(QSMInputError, match="99 do not occur"):
        custom_atlas(atlas.template, atlas.labels, missing)

    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(labels.dataobj)[::2, ::2, ::2], labels.affine), small)
    with pytest.raises(QSMInputError, match="different grids"):
        custom_atlas(atlas.template, small, good_tsv)

    no_header = tmp_path / "bad.tsv"
    no_header.write_text("1\tcaudate\n")
    with pytest.raises(QSMInputError, match="header"):
        custom_atlas(atlas.template, atlas.labels, no_header)


def test_crop_to_foreground_keeps_physical_space():
    import ants

    from qsmflow.interfaces.atlas import crop_to_foreground

    data = np.zeros((30, 40, 20), np.float32)
    data[10:15, 12:20, 1:5] = np.arange(1, 5 * 8 * 4 + 1).reshape(5, 8, 4)
    direction = rigid_pose((0, 0, 20), (0, 0, 0))[:3, :3]  # oblique axes
    image = ants.from_numpy(data, origin=(5.0, -7.0, 3.0), spacing=(1.5, 1.0, 2.0),
                            direction=direction)
    cropped = crop_to_foreground(ants, image, margin_mm=3.0)
    # 3 mm: 2 voxels at 1.5 mm, 3 at 1 mm, 2 at 2 mm (clipped at the first slice)
    assert cropped.shape == (5 + 4, 8 + 6, 1 + 4 + 2)
    assert cropped.numpy().sum() == pytest.approx(data.sum())
    first = ants.transform_index_to_physical_point(image, (10, 12, 1))
    same = ants.transform_index_to_physical_point(cropped, (2, 3, 1))
    np.testing.assert_allclose(same, first, atol=1e-4)
    assert cropped.numpy()[2, 3, 1] == data[10, 12, 1]
    np.testing.assert_allclose(cropped.direction, image.direction, atol=1e-6)
