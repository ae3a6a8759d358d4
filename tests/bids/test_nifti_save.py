"""The one NIfTI writer: header, scaling and the write-then-rename."""

import nibabel as nib
import numpy as np

from qsmflow.bids.nifti import save_nifti


def _oblique_affine():
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.diag([0.9, 1.1, 2.0, 1.0])
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    affine[:3, 3] = (-40.0, 12.5, 7.0)
    return affine


def test_round_trip_with_both_transforms_and_units(tmp_path, rng):
    data = rng.normal(size=(7, 5, 3))
    affine = _oblique_affine()
    out = save_nifti(data, affine, tmp_path / "new" / "x.nii.gz")
    assert out == str(tmp_path / "new" / "x.nii.gz")
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.get_fdata(), data.astype(np.float32), rtol=0, atol=0)
    for form, code in (img.header.get_sform(coded=True), img.header.get_qform(coded=True)):
        assert code == 1
        np.testing.assert_allclose(form, affine, atol=1e-5)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["x.nii.gz"]  # no temp


def test_slope_stores_integers_exact_to_the_slope(tmp_path, rng):
    data = rng.uniform(-0.3, 0.3, size=(6, 6, 6))
    out = save_nifti(data, np.eye(4), tmp_path / "chi.nii.gz", dtype=np.int16, slope=1e-4)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    assert np.abs(img.get_fdata() - data).max() <= 0.5e-4 + 1e-12
    assert np.abs(img.get_fdata() - data).max() > 1e-6  # it really was quantised
