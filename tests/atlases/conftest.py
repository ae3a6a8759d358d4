"""One atlas registration per example participant, shared by the tests of this folder."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmflow.atlases import default_atlas
from qsmflow.atlases.anatomy import load_template_anatomy

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"
TRUTH = EXAMPLES / "derivatives" / "groundtruth"


@pytest.fixture(scope="session")
def default_atlas_files(tmp_path_factory):
    return default_atlas(tmp_path_factory.mktemp("default_atlas"))


@pytest.fixture(scope="session")
def example_registrations(example_run, tmp_path_factory):
    """The pipeline's registration of the default atlas to sub-01 and sub-02, from the
    examples' default run (``tests/conftest.py``: one run serves every end-to-end test).

    Its fixed image is echo 1 of the example magnitude inside the default (deepbet) mask.
    The SUIT cerebellum mask is carried with the run's own transforms and the labels'
    interpolator.
    """
    import ants

    template = load_template_anatomy()
    root = tmp_path_factory.mktemp("example_registration")
    cerebellum_path = root / "cerebellum.nii.gz"
    nib.save(nib.Nifti1Image(template.cerebellum.astype(np.uint8), template.affine),
             cerebellum_path)
    results = {}
    for subject in ("01", "02"):
        anat = example_run["out"] / f"sub-{subject}" / "anat"
        stem = f"sub-{subject}_from-MNI152NLin2009aSym_to-orig_mode-image_desc"
        warp_xfm, affine_xfm = str(anat / f"{stem}-warp_xfm.nii.gz"), str(
            anat / f"{stem}-affine_xfm.mat")
        magnitude = nib.load(EXAMPLES / f"sub-{subject}" / "anat" /
                             f"sub-{subject}_echo-1_part-mag_MEGRE.nii.gz")
        nib.save(nib.Nifti1Image(magnitude.get_fdata(dtype=np.float32), magnitude.affine),
                 root / f"echo1_{subject}.nii.gz")
        fixed = ants.image_read(str(root / f"echo1_{subject}.nii.gz"))
        cerebellum = ants.apply_transforms(fixed, ants.image_read(str(cerebellum_path)),
                                           [warp_xfm, affine_xfm],
                                           interpolator="genericLabel").numpy() > 0.5
        jacobian = ants.create_jacobian_determinant_image(fixed, warp_xfm).numpy()
        matrix = np.asarray(ants.read_transform(affine_xfm).parameters[:9]).reshape(3, 3)
        labels = nib.load(anat / f"sub-{subject}_space-orig_desc-deepgm_dseg.nii.gz")
        results[subject] = {
            "labels": np.asarray(labels.dataobj),
            "affine": labels.affine,
            "cerebellum": cerebellum,
            "warp_jacobian": jacobian,
            "affine_det": float(np.linalg.det(matrix)),
            "truth_labels": np.asarray(nib.load(
                TRUTH / f"sub-{subject}" / "anat" /
                f"sub-{subject}_desc-deepgm_dseg.nii.gz").dataobj),
            "brain": np.asarray(nib.load(TRUTH / f"sub-{subject}" / "anat" /
                                         f"sub-{subject}_desc-brain_mask.nii.gz").dataobj) > 0,
        }
    return results
