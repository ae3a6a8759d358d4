"""``qsmflow-invert``: the same inversion as the pipeline, on a field map you give it."""

import json

import nibabel as nib
import numpy as np

from qsmflow.algorithms.dipole import forward_field_ppm
from qsmflow.bids.nifti import save_nifti
from qsmflow.cli.config import EXIT_OK, EXIT_USAGE
from qsmflow.cli.invert import main
from qsmflow.inversion import invert_local_field


def _sphere_field_files(tmp_path):
    """A 0.1 ppm sphere's field in a spherical mask, saved as field.nii.gz and mask.nii.gz."""
    shape, vsz = (24, 22, 20), (1.0, 1.0, 1.5)
    grid = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    mask = (grid**2).sum(0) < 9**2
    chi = np.where((grid**2).sum(0) < 4**2, 0.1, 0.0)
    field = forward_field_ppm(chi, vsz, (0, 0, 1)) * mask
    affine = np.diag([*vsz, 1.0])
    save_nifti(field, affine, tmp_path / "field.nii.gz")
    save_nifti(mask, affine, tmp_path / "mask.nii.gz", dtype=np.uint8)
    return field, mask, vsz, chi


def test_tkd_from_files_equals_the_python_api(tmp_path):
    field, mask, vsz, chi = _sphere_field_files(tmp_path)
    out = tmp_path / "chi.nii.gz"
    args = ["--field", str(tmp_path / "field.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"),
            "--out", str(out), "--method", "tkd"]
    assert main(args) == EXIT_OK
    expected = invert_local_field(field.astype(np.float32), mask, vsz, (0, 0, 1), method="tkd",
                                  b0_t=3.0, te_s=0.02).chi_ppm
    np.testing.assert_allclose(nib.load(out).get_fdata(), expected, atol=1e-6)
    sidecar = json.loads((tmp_path / "chi.json").read_text())
    assert sidecar["DipoleInversionMethod"] == "tkd" and sidecar["Units"] == "ppm"
    assert main(args) == EXIT_USAGE  # exists: refused without --force
    assert main([*args, "--force"]) == EXIT_OK


def test_tv_and_rts_run_from_files_without_b0_or_te(tmp_path):
    """The linear methods need neither --b0 nor --te, and give the Python API's result."""
    field, mask, vsz, chi = _sphere_field_files(tmp_path)
    for method in ("tv", "rts"):
        out = tmp_path / f"chi_{method}.nii.gz"
        assert main(["--field", str(tmp_path / "field.nii.gz"), "--mask",
                     str(tmp_path / "mask.nii.gz"), "--out", str(out), "--method", method]) \
            == EXIT_OK
        expected = invert_local_field(field.astype(np.float32), mask, vsz, (0, 0, 1),
                                      method=method, b0_t=3.0, te_s=0.02).chi_ppm
        written = nib.load(out).get_fdata()
        np.testing.assert_allclose(written, expected, atol=1e-6)
        assert np.abs(written[chi > 0].mean() - 0.1) < 0.05  # it recovered the sphere
        sidecar = json.loads(out.with_name(f"chi_{method}.json").read_text())
        assert sidecar["DipoleInversionMethod"] == method
