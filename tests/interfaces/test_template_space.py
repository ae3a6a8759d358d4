"""Images between the native grid and the template: masks in (WarpTemplateMask), chi out
(ResampleToTemplate)."""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np

from qsmflow.interfaces.template_space import WarpTemplateMask

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


# Native -> template (ResampleToTemplate), with the same known affine: a native point p
# (RAS) is the template point p - (3, 0, 0) mm, so chi_template(q) = f(q + (3, 0, 0)).
WAVELENGTH_MM = 40.0
AMPLITUDE_PPM = 0.1
NATIVE_VOXEL_MM = 2.0
# Linear interpolation of a smooth f on an h-spaced grid errs by at most h^2/8 * max|f''|
# per axis; f below has |d2f/dx2| <= A k^2 along x and none along y, z. That is the scale
# the cubic B-spline must beat by far away from the field of view's edge (3 native voxels):
# f has 20 samples per wavelength, where it errs by ~1e-4 of A.
LINEAR_INTERPOLATION_BOUND_PPM = NATIVE_VOXEL_MM ** 2 / 8 * AMPLITUDE_PPM * (
    2 * np.pi / WAVELENGTH_MM) ** 2
SPLINE_BOUND_PPM = 1e-3 * AMPLITUDE_PPM
SPLINE_EDGE_MM = 3 * NATIVE_VOXEL_MM
# Near the field of view's edge ITK mirrors the image, so a sloped f errs there by a
# fraction of the slope x one voxel: A k h / 2 = 0.016 ppm.
EDGE_BOUND_PPM = AMPLITUDE_PPM * (2 * np.pi / WAVELENGTH_MM) * NATIVE_VOXEL_MM / 2


def _chi_ppm(x_mm, y_mm, z_mm):
    return AMPLITUDE_PPM * np.sin(2 * np.pi * x_mm / WAVELENGTH_MM) + 0.001 * y_mm - 0.002 * z_mm


def _world(affine, shape):
    ijk = np.indices(shape).reshape(3, -1)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape(3, *shape)


def test_chi_reaches_the_template_through_the_inverse_registration(tmp_path, monkeypatch):
    from qsmflow.interfaces.template_space import ResampleToTemplate

    monkeypatch.chdir(tmp_path)
    native_shape, template_shape = (24, 24, 24), (37, 31, 29)
    native_affine = np.diag([NATIVE_VOXEL_MM] * 3 + [1.0])
    native_affine[:3, 3] = (-23.0, -23.0, -23.0)
    template_affine = np.eye(4)
    template_affine[:3, 3] = (-18.0, -15.0, -14.0)
    nib.save(nib.Nifti1Image(_chi_ppm(*_world(native_affine, native_shape)).astype(np.float32),
                             native_affine), tmp_path / "chi.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(native_shape, np.uint8), native_affine),
             tmp_path / "mask.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(template_shape, np.float32), template_affine),
             tmp_path / "template.nii.gz")
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           translation=(SHIFT_MM, 0.0, 0.0))
    ants.write_transform(transform, str(tmp_path / "affine.mat"))
    zero = ants.from_numpy(np.zeros(native_shape + (3,), np.float32), has_components=True)
    ants.image_write(zero, str(tmp_path / "inverse_warp.nii.gz"))

    out = ResampleToTemplate(chi_ppm=str(tmp_path / "chi.nii.gz"),
                             mask=str(tmp_path / "mask.nii.gz"),
                             template=str(tmp_path / "template.nii.gz"),
                             affine_xfm=str(tmp_path / "affine.mat"),
                             inverse_warp_xfm=str(tmp_path / "inverse_warp.nii.gz")).run().outputs
    chi = nib.load(out.chi_ppm)
    mask = np.asarray(nib.load(out.mask).dataobj) > 0
    assert chi.shape == template_shape and np.allclose(chi.affine, template_affine)
    x, y, z = _world(template_affine, template_shape)
    # The template grid lies inside the native field of view, with a voxel to spare.
    assert mask.all()
    expected = _chi_ppm(x + SHIFT_MM, y, z)
    error = np.abs(chi.get_fdata() - expected)
    native_lo = native_affine[:3, 3] + SPLINE_EDGE_MM
    native_hi = native_affine[:3, 3] + NATIVE_VOXEL_MM * (np.array(native_shape) - 1) \
        - SPLINE_EDGE_MM
    source = np.stack([x + SHIFT_MM, y, z])
    interior = np.all((source >= native_lo[:, None, None, None])
                      & (source <= native_hi[:, None, None, None]), axis=0)
    assert interior.sum() > 0.3 * interior.size
    assert error[interior].max() <= SPLINE_BOUND_PPM, error[interior].max()
    assert error.max() <= EDGE_BOUND_PPM, error.max()
    # and the shift is seen: without it the error is ~ f's slope x 3 mm
    assert np.abs(chi.get_fdata() - _chi_ppm(x, y, z)).max() > 10 * LINEAR_INTERPOLATION_BOUND_PPM


def test_chi_near_the_mask_edge_is_not_pulled_towards_zero(tmp_path, monkeypatch):
    """Constant chi inside a box mask (0 outside, as the pipeline writes it), a half-voxel
    shift: every template voxel in the mask is the constant (chi extended beyond the mask,
    as a cubic B-spline reproduces constants), where interpolating the stored map gives
    half of it at the edge."""
    from qsmflow.interfaces.template_space import ResampleToTemplate

    monkeypatch.chdir(tmp_path)
    shape, chi_ppm = (20, 20, 20), 0.08
    native_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[5:15, 5:15, 5:15] = 1
    nib.save(nib.Nifti1Image((mask * chi_ppm).astype(np.float32), native_affine),
             tmp_path / "chi.nii.gz")
    nib.save(nib.Nifti1Image(mask, native_affine), tmp_path / "mask.nii.gz")
    template_affine = np.eye(4)
    template_affine[:3, 3] = 0.5  # template voxels between native ones
    nib.save(nib.Nifti1Image(np.ones((38, 38, 38), np.uint8), template_affine),
             tmp_path / "template.nii.gz")  # an integer template: chi must stay float
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform",
                                                    dimension=3), str(tmp_path / "id.mat"))
    zero = ants.from_numpy(np.zeros(shape + (3,), np.float32), has_components=True)
    ants.image_write(zero, str(tmp_path / "warp.nii.gz"))
    out = ResampleToTemplate(chi_ppm=str(tmp_path / "chi.nii.gz"),
                             mask=str(tmp_path / "mask.nii.gz"),
                             template=str(tmp_path / "template.nii.gz"),
                             affine_xfm=str(tmp_path / "id.mat"),
                             inverse_warp_xfm=str(tmp_path / "warp.nii.gz")).run().outputs
    chi = nib.load(out.chi_ppm).get_fdata()
    template_mask = np.asarray(nib.load(out.mask).dataobj) > 0
    # native voxels 5..14 are centred at 10..28 mm; the interpolated mask is >= 0.5 from
    # 9 to 29 mm, which holds the template centres 9.5..28.5 mm: 20 per axis
    assert 19 ** 3 <= template_mask.sum() <= 20 ** 3
    np.testing.assert_allclose(chi[template_mask], chi_ppm, rtol=1e-5)
    assert np.all(chi[~template_mask] == 0)
