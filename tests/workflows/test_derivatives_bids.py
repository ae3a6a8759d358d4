"""Every derivative qsmflow names, with the sidecars the sink writes, passes the official
BIDS validator as a derivative dataset; without running the pipeline (small images)."""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmflow.bids.derivative_dataset import BIDSIGNORE, write_dataset_description
from qsmflow.bids.errors import QSMUsageError
from qsmflow.bids.validator import run_validator
from qsmflow.interfaces.atlas import _save_warp
from qsmflow.interfaces.derivatives import FirstVolume
from qsmflow.workflows.outputs import (
    ROI_OUTPUTS,
    _sidecars,
    qsm_outputs,
    registration_outputs,
    template_outputs,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "bids_examples"
sys.path.insert(0, str(ROOT / "scripts"))
from validate_bids import documented_warnings  # noqa: E402

SHAPE = (7, 9, 5)


def _image(path: Path, shape, dtype=np.float32, zooms=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ones(shape, dtype), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    if zooms is not None:
        img.header.set_zooms(zooms)
    nib.save(img, path)
    return path


def _derivative_dataset(out: Path) -> list[str]:
    """What the sink writes for sub-01 of the examples, with small images."""
    outputs = (qsm_outputs("LBV background removal") + ROI_OUTPUTS
               + registration_outputs("MNI152NLin2009aSym")
               + template_outputs("MNI152NLin2009aSym", "1", "1 mm isotropic",
                                  "https://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009"))
    from qsmflow.bids.naming import derivative_path

    paths = [str(derivative_path(".", {"subject": "01", **o.entities}, o.suffix, o.extension,
                                 datatype=o.datatype)) for o in outputs]
    raw = [f"bids:raw:sub-01/anat/sub-01_echo-{e}_part-{p}_MEGRE.nii.gz"
           for p in ("mag", "phase") for e in (1, 2, 3)]
    sidecars = _sidecars(outputs, paths, {"Sources": raw, "EchoTime": [0.004, 0.011, 0.018]})
    for o, path, sidecar in zip(outputs, paths, sidecars, strict=True):
        target = out / path
        # ANTs' displacement fields: 0 spacing in t and vector
        if o.field in ("warp_xfm", "inverse_warp_xfm"):
            ants_warp = _image(out / "ants_warp.nii.gz", SHAPE + (1, 3),
                               zooms=(2.0, 2.0, 2.0, 0.0, 0.0))
            target.parent.mkdir(parents=True, exist_ok=True)
            _save_warp(str(ants_warp), str(target))
            ants_warp.unlink()
        elif o.extension == ".nii.gz":
            _image(target, SHAPE)
        elif o.extension == ".tsv":
            target.write_text("index\tname\troi\themisphere\tsource\n"
                              "1\tcaudate_left\tcaudate\tleft\tAAL3 75\n")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"x")
        if sidecar:
            (out / path.split(".")[0]).with_suffix(".json").write_text(json.dumps(sidecar))
    (out / "sub-01.html").write_text("<html></html>")
    (out / "group").mkdir()
    (out / "group" / "group_desc-deepgm_long.csv").write_text("a\n")
    (out / "logs").mkdir()
    (out / "logs" / "qsmflow_config.toml").write_text("")
    write_dataset_description(out, EXAMPLES)
    return paths


def test_every_output_validates_as_bids_derivatives(tmp_path):
    out = tmp_path / "qsmflow"
    paths = _derivative_dataset(out)
    assert "sub-01/fmap/sub-01_desc-total_fieldmap.nii.gz" in paths
    assert "sub-01/fmap/sub-01_magnitude.nii.gz" in paths
    assert "sub-01/anat/sub-01_space-MNI152NLin2009aSym_res-1_Chimap.nii.gz" in paths
    assert "sub-01/anat/sub-01_space-MNI152NLin2009aSym_res-1_desc-qsm_mask.nii.gz" in paths
    assert ("sub-01/anat/sub-01_from-orig_to-MNI152NLin2009aSym_mode-image_desc-warp_xfm"
            ".nii.gz") in paths
    result = run_validator(out, dataset_types=("derivative",))
    assert result.errors == (), [(i.code, i.sub_code, i.location) for i in result.errors]
    undocumented = {(i.code, i.sub_code) for i in result.warnings} - documented_warnings()
    assert not undocumented


def test_the_warp_keeps_its_values_with_unit_spacing_in_t_and_vector(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=SHAPE + (1, 3)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0]))
    img.header.set_intent("vector")
    img.header.set_zooms((2.0, 3.0, 4.0, 0.0, 0.0))
    nib.save(img, tmp_path / "ants.nii.gz")
    saved = nib.load(_save_warp(str(tmp_path / "ants.nii.gz"), str(tmp_path / "w.nii.gz")))
    assert saved.header.get_zooms() == (2.0, 3.0, 4.0, 1.0, 1.0)
    assert saved.header.get_intent()[0] == "vector"
    np.testing.assert_array_equal(np.asarray(saved.dataobj), data)
    np.testing.assert_array_equal(saved.affine, img.affine)


def test_first_volume_is_echo_one(tmp_path, monkeypatch):
    data = np.arange(np.prod(SHAPE) * 3, dtype=np.float32).reshape(SHAPE + (3,))
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "mag.nii.gz")
    monkeypatch.chdir(tmp_path)  # Nipype runs interfaces in their node's folder
    result = FirstVolume(in_file=str(tmp_path / "mag.nii.gz")).run()
    first = nib.load(result.outputs.out_file)
    assert first.shape == SHAPE
    np.testing.assert_array_equal(first.get_fdata(), data[..., 0])


def test_dataset_description_readme_and_bidsignore(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps(
        {"Name": "r", "BIDSVersion": "1.10.0", "Authors": ["A. B.", "C. D."],
         "License": "CC-BY-4.0"}))
    out = tmp_path / "out"
    out.mkdir()
    (out / ".bidsignore").write_text("mine/\n")
    write_dataset_description(out, raw)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["Authors"] == ["A. B.", "C. D."]
    assert description["License"] == "CC-BY-4.0"
    assert description["DatasetLinks"] == {"raw": raw.resolve().as_uri()}
    assert "desc-total_fieldmap" in (out / "README.md").read_text()
    # A user's own entries are kept; qsmflow's are added once.
    write_dataset_description(out, raw)
    assert (out / ".bidsignore").read_text().splitlines() == ["mine/", *BIDSIGNORE]
    with pytest.raises(QSMUsageError, match="not a derivative dataset"):
        write_dataset_description(raw, None)
