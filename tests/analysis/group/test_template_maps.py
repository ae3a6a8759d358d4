"""Voxel-wise group maps of template-space chi: known maps give known means and SDs."""

import json

import nibabel as nib
import numpy as np
import pandas as pd

from qsmflow.analysis.group.template_maps import template_group_maps

SHAPE = (6, 7, 5)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
SPACE = "space-MNI152NLin2009aSym_res-1"


def _scan(out, sub, value_ppm, *, session=None, covered=slice(None)):
    folder = out / f"sub-{sub}" / (f"ses-{session}/anat" if session else "anat")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{sub}" + (f"_ses-{session}" if session else "") + f"_{SPACE}"
    mask = np.zeros(SHAPE, np.uint8)
    mask[covered] = 1
    chi = np.where(mask > 0, value_ppm, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(chi, AFFINE), folder / f"{stem}_Chimap.nii.gz")
    nib.save(nib.Nifti1Image(mask, AFFINE), folder / f"{stem}_desc-qsm_mask.nii.gz")


def test_means_sds_and_counts_per_group(tmp_path):
    x = np.arange(SHAPE[0])[:, None, None] * np.ones(SHAPE)  # a map that varies
    _scan(tmp_path, "01", 0.10 + 0.01 * x)
    _scan(tmp_path, "02", 0.14 + 0.01 * x)
    _scan(tmp_path, "03", 0.02, covered=(slice(0, 3),))  # half the grid
    # sub-04 has two sessions: its maps are averaged first (0.06), so it counts once
    _scan(tmp_path, "04", 0.05, session="pre")
    _scan(tmp_path, "04", 0.07, session="post")
    _scan(tmp_path, "05", 0.5)  # no group: left out
    groups = pd.Series({"sub-01": "control", "sub-02": "control", "sub-03": "patient",
                        "sub-04": "patient", "sub-05": np.nan})
    files, skipped = template_group_maps(tmp_path, groups, group_by="group")
    assert skipped == ["sub-05: no group value; left out of the space-MNI152NLin2009aSym "
                       "group maps"]
    prefix = "group_space-MNI152NLin2009aSym_res-1_desc-"
    mean, _, sidecar = files[f"{prefix}controlMean_Chimap.nii.gz"]
    np.testing.assert_allclose(mean, 0.12 + 0.01 * x, atol=1e-6)
    sd = files[f"{prefix}controlSD_Chimap.nii.gz"][0]
    np.testing.assert_allclose(sd, np.sqrt(2 * 0.02 ** 2), atol=1e-6)  # (0.10, 0.14), n - 1
    assert sidecar["N"] == 2 and sidecar["Participants"] == ["sub-01", "sub-02"]
    assert sidecar["Units"] == "ppm"
    json.dumps(sidecar)  # the sidecar is plain JSON

    mean = files[f"{prefix}patientMean_Chimap.nii.gz"][0]
    sd = files[f"{prefix}patientSD_Chimap.nii.gz"][0]
    count = files[f"{prefix}patientCount_count.nii.gz"][0]
    np.testing.assert_array_equal(count[:3], 2)
    np.testing.assert_array_equal(count[3:], 1)
    np.testing.assert_allclose(mean[:3], 0.04, atol=1e-6)  # (0.02, 0.06)
    np.testing.assert_allclose(mean[3:], 0.06, atol=1e-6)  # sub-04 alone
    np.testing.assert_allclose(sd[:3], np.sqrt(2 * 0.02 ** 2), atol=1e-6)
    np.testing.assert_array_equal(sd[3:], 0.0)  # one participant: no SD
    assert files[f"{prefix}patientMean_Chimap.nii.gz"][2]["N"] == 2


def test_without_groups_everyone_is_one_group(tmp_path):
    _scan(tmp_path, "01", 0.1)
    _scan(tmp_path, "02", 0.3)
    files, _ = template_group_maps(tmp_path, None, group_by=None, participant_ids={"sub-01"})
    mean, _, sidecar = files["group_space-MNI152NLin2009aSym_res-1_desc-allMean_Chimap.nii.gz"]
    np.testing.assert_allclose(mean, 0.1, atol=1e-6)
    assert sidecar["Participants"] == ["sub-01"]
