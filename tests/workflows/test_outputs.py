"""The derivatives' sidecars say which background removal ran."""

import pytest

from qsmflow.algorithms.bgremove import describe_background_removal
from qsmflow.bids.discovery import GRERun
from qsmflow.workflows.base import init_single_run_wf


def _sidecars(tmp_path, **qsm_options) -> dict:
    """``{file name ending: sidecar}`` of the run's derivative sink."""
    files = lambda part: tuple(f"/in/sub-01_echo-{e}_part-{part}_MEGRE.nii.gz"  # noqa: E731
                               for e in (1, 2))
    run = GRERun("01", None, None, None, "MEGRE", files("mag"), files("phase"),
                 (0.005, 0.010), 3.0)
    workflow = init_single_run_wf(run, out_dir=str(tmp_path),
                                  qsm_options={"inversion": "tkd", **qsm_options})
    sink = workflow.get_node("ds_run_wf").get_node("ds_run")
    return {path.split("_", 1)[-1]: sidecar
            for path, sidecar in zip(sink.inputs.out_paths, sink.inputs.sidecars, strict=True)}


@pytest.mark.parametrize("options,expected", [
    ({}, "LBV background removal with dipole-model refinement"),
    ({"bgremove_refine": False}, "LBV background removal"),
    ({"bgremove": "vsharp"}, "V-SHARP background removal with dipole-model refinement"),
    ({"bgremove": "vsharp", "bgremove_refine": False}, "V-SHARP background removal"),
])
def test_sidecars_name_the_background_removal_that_ran(tmp_path, options, expected):
    sidecars = _sidecars(tmp_path, **options)
    local = sidecars["desc-local_fieldmap.nii.gz"]["Description"]
    mask = sidecars["desc-qsm_mask.nii.gz"]["Description"]
    assert local == f"local field after {expected}"
    assert mask == f"voxels where the local field and chi are valid (after {expected})"
    other = "V-SHARP" if options.get("bgremove") != "vsharp" else "LBV"
    assert other not in local + mask
    assert ("refinement" in local) == options.get("bgremove_refine", True)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown background removal method 'sharp'"):
        describe_background_removal("sharp", True)
