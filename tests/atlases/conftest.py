"""One atlas registration per example participant, shared by the tests of this folder."""

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmflow.atlases import default_atlas
from qsmflow.atlases.anatomy import load_template_anatomy
from qsmflow.interfaces.atlas import RegisterAtlas

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"
TRUTH = EXAMPLES / "derivatives" / "groundtruth"


@pytest.fixture(scope="session")
def default_atlas_files(tmp_path_factory):
    return default_atlas(tmp_path_factory.mktemp("default_atlas"))


@pytest.fixture(scope="session")
def example_registrations(default_atlas_files, tmp_path_factory):
    """The pipeline's registration (RegisterAtlas) of the default atlas to sub-01 and sub-02.

    Fixed image: echo 1 of the example magnitude, masked by the example's true brain mask
    (the registration, not the brain extraction, is under test). The SUIT cerebellum mask is
    carried with the same transforms and interpolator as the labels.
    """
    import ants

    template = load_template_anatomy()
    root = tmp_path_factory.mktemp("example_registration")
    cerebellum_path = root / "cerebellum.nii.gz"
    nib.save(nib.Nifti1Image(template.cerebellum.astype(np.uint8), template.affine),
             cerebellum_path)
    results, cwd = {}, os.getcwd()
    for subject in ("01", "02"):
        work = root / subject
        work.mkdir()
        magnitude = nib.load(EXAMPLES / f"sub-{subject}" / "anat" /
                             f"sub-{subject}_echo-1_part-mag_MEGRE.nii.gz")
        echo1 = magnitude.get_fdata(dtype=np.float32)
        nib.save(nib.Nifti1Image(echo1[..., None], magnitude.affine), work / "magnitude.nii.gz")
        nib.save(nib.Nifti1Image(echo1, magnitude.affine), work / "echo1.nii.gz")
        mask = TRUTH / f"sub-{subject}" / "anat" / f"sub-{subject}_desc-brain_mask.nii.gz"
        os.chdir(work)
        try:
            out = RegisterAtlas(magnitude=str(work / "magnitude.nii.gz"), mask=str(mask),
                                template=str(default_atlas_files.template),
                                labels=str(default_atlas_files.labels), n_threads=2).run().outputs
        finally:
            os.chdir(cwd)
        fixed = ants.image_read(str(work / "echo1.nii.gz"))
        cerebellum = ants.apply_transforms(fixed, ants.image_read(str(cerebellum_path)),
                                           [out.warp_xfm, out.affine_xfm],
                                           interpolator="genericLabel").numpy() > 0.5
        jacobian = ants.create_jacobian_determinant_image(fixed, out.warp_xfm).numpy()
        matrix = np.asarray(ants.read_transform(out.affine_xfm).parameters[:9]).reshape(3, 3)
        results[subject] = {
            "labels": np.asarray(nib.load(out.native_labels).dataobj),
            "affine": nib.load(out.native_labels).affine,
            "cerebellum": cerebellum,
            "warp_jacobian": jacobian,
            "affine_det": float(np.linalg.det(matrix)),
            "truth_labels": np.asarray(nib.load(
                TRUTH / f"sub-{subject}" / "anat" /
                f"sub-{subject}_desc-deepgm_dseg.nii.gz").dataobj),
            "brain": np.asarray(nib.load(mask).dataobj) > 0,
        }
    return results
