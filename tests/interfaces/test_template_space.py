"""WarpTemplateMask carries a template-space mask through given ANTs transforms."""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np

from qsmflow.interfaces.roi import WarpTemplateMask

SHIFT_MM = 3.0


def test_mask_follows_a_known_translation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    template_mask = np.zeros((24, 24, 24), np.uint8)
    template_mask[8:14, 8:14, 8:14] = 1
    nib.save(nib.Nifti1Image(template_mask, affine), tmp_path / "template_mask.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((24, 24, 24), np.uint8), affine),
             tmp_path / "native.nii.gz")
    # ANTs maps each native (fixed) point p to the template point p + t, in ITK's LPS
    # coordinates, where x points the other way than in NIfTI's RAS: t = +3 mm (LPS x) is
    # -3 mm in RAS, so the mask appears 3 voxels further along +x natively. The warp is 0.
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           translation=(SHIFT_MM, 0.0, 0.0))
    ants.write_transform(transform, str(tmp_path / "affine.mat"))
    zero = ants.from_numpy(np.zeros((24, 24, 24, 3), np.float32), has_components=True)
    ants.image_write(zero, str(tmp_path / "warp.nii.gz"))

    result = WarpTemplateMask(mask=str(tmp_path / "template_mask.nii.gz"),
                              reference=str(tmp_path / "native.nii.gz"),
                              affine_xfm=str(tmp_path / "affine.mat"),
                              warp_xfm=str(tmp_path / "warp.nii.gz")).run()

    native = np.asarray(nib.load(result.outputs.native_mask).dataobj)
    expected = np.zeros_like(template_mask)
    expected[11:17, 8:14, 8:14] = 1
    assert np.array_equal(native, expected)
