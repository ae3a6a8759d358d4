"""Chi in template space on bids_examples/: the pipeline with --output-spaces, then the
group level; template-space ROI means agree with the native ROI tables.

The example participants are read from the dataset's participants.tsv, so the test
holds for whatever examples scripts/make_bids_examples.py makes. The run is the
default one that the end-to-end tests share (``tests/conftest.py``: deepbet, NSIDL).
"""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmflow.atlases import atlas_cache_dir, default_atlas

EXAMPLES = Path(__file__).resolve().parents[2] / "bids_examples"
SPACE = "space-MNI152NLin2009aSym_res-1"
LARGE_NUCLEI = ("caudate", "putamen", "globus_pallidus", "thalamus")
RELATIVE_TOLERANCE = 0.10  # issue 14: template-space means within 10 % of native ones
# ... or within this, for means near 0 ppm. On the examples the thalamus is -0.002..+0.006
# ppm and the left putamen of sub-01 0.012 ppm beside a 0.11 ppm pallidum, where 10 %
# (< 0.0012 ppm) is below what 2 mm native labels and 1 mm template labels make at a
# region's edge: with the B-spline resampling those rows differ by 0.0003-0.0014 ppm
# (nearest-neighbour resampling of chi: the same). Applying the registration without its
# warp differs by up to 0.011 ppm, and the forward warp in place of the inverse by up to
# 0.021 ppm (measured with linear resampling): both fail.
ABSOLUTE_FLOOR_PPM = 0.0025

pytestmark = pytest.mark.slow


def _participants() -> list[str]:
    with open(EXAMPLES / "participants.tsv", newline="") as f:
        return [row["participant_id"] for row in csv.DictReader(f, delimiter="\t")]


def _groups() -> pd.Series:
    """Each participant's group: the ``group`` column, or ``all`` without one."""
    table = pd.read_csv(EXAMPLES / "participants.tsv", sep="\t").set_index("participant_id")
    return table["group"] if "group" in table else pd.Series("all", index=table.index)


@pytest.fixture(scope="module")
def template_run(example_run):
    """The examples' default run with --output-spaces and the group level by group
    (``tests/conftest.py``)."""
    # The run built the default atlas into this cache; default_atlas only finds it.
    atlas = default_atlas(atlas_cache_dir(example_run["work"]))
    return {"codes": (example_run["code"], example_run["group_code"]),
            "out": example_run["out"], "atlas": atlas}


def test_runs_succeed(template_run):
    assert template_run["codes"] == (0, 0)


@pytest.mark.parametrize("participant", _participants())
def test_template_roi_means_match_the_native_table(template_run, participant):
    anat = template_run["out"] / participant / "anat"
    chi_image = nib.load(anat / f"{participant}_{SPACE}_Chimap.nii.gz")
    labels_image = nib.load(template_run["atlas"].labels)
    assert chi_image.shape == labels_image.shape
    np.testing.assert_allclose(chi_image.affine, labels_image.affine, atol=1e-4)
    chi = chi_image.get_fdata()
    mask = np.asarray(nib.load(anat / f"{participant}_{SPACE}_desc-qsm_mask.nii.gz").dataobj) > 0
    labels = np.asarray(labels_image.dataobj)
    table = pd.read_csv(anat / f"{participant}_desc-deepgm_chistats.csv")
    sidecar = json.loads((anat / f"{participant}_{SPACE}_Chimap.json").read_text())
    assert sidecar["Units"] == "ppm"
    assert f"bids::{participant}/anat/{participant}_Chimap.nii.gz" in sidecar["Sources"]
    checked = 0
    for row in table.itertuples():
        if row.roi not in LARGE_NUCLEI:
            continue
        native_ppm = row.mean_ppm + row.chi_reference_ppm  # the table's, unreferenced
        voxels = (labels == row.label_id) & mask
        template_ppm = chi[voxels].mean()
        tolerance = max(RELATIVE_TOLERANCE * abs(native_ppm), ABSOLUTE_FLOOR_PPM)
        assert abs(template_ppm - native_ppm) <= tolerance, (
            f"{participant} {row.roi} {row.hemisphere}: template {template_ppm:.4f} ppm, "
            f"native {native_ppm:.4f} ppm")
        checked += 1
    assert checked == 2 * len(LARGE_NUCLEI)


def test_group_maps_per_group(template_run):
    group_dir = template_run["out"] / "group"
    groups = _groups()
    for group in sorted(set(groups)):
        members = sorted(groups.index[groups == group])
        stem = f"group_space-MNI152NLin2009aSym_res-1_desc-{group}"
        mean = nib.load(group_dir / f"{stem}Mean_Chimap.nii.gz").get_fdata()
        count = np.asarray(nib.load(group_dir / f"{stem}Count_count.nii.gz").dataobj)
        sidecar = json.loads((group_dir / f"{stem}Mean_Chimap.json").read_text())
        assert sidecar["N"] == len(members)
        assert sidecar["Participants"] == members
        assert count.max() == len(members)
        # one member alone: the group mean is that member's map where it covers
        if len(members) == 1:
            pid = members[0]
            own = nib.load(template_run["out"] / pid / "anat" /
                           f"{pid}_{SPACE}_Chimap.nii.gz").get_fdata()
            np.testing.assert_allclose(mean[count > 0], own[count > 0], atol=1e-6)
