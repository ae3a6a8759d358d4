import json
from pathlib import Path

import pytest


def make_skeleton(root: Path, *, subjects=("01",), sessions=(None,), n_echoes=3,
                  suffix="MEGRE", te_s=(0.004, 0.008, 0.012, 0.016, 0.020), b0_t=3.0,
                  drop=(), sidecar_overrides=None, entities="", parts=("mag", "phase"),
                  sidecar_extra=None):
    """A BIDS tree whose NIfTIs are empty files: enough for discovery, fast to build.

    ``entities`` (such as ``"_rec-norm"``) goes between the session and the echo;
    ``sidecar_extra`` is added to every sidecar.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "skeleton", "BIDSVersion": "1.9.0"}))
    for sub in subjects:
        for ses in sessions:
            anat = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            for echo in range(1, n_echoes + 1):
                for part in parts:
                    stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + entities
                    stem += (f"_echo-{echo}" if n_echoes > 1 else "") + f"_part-{part}_{suffix}"
                    if stem in drop:
                        continue
                    (anat / f"{stem}.nii.gz").write_bytes(b"")
                    sidecar = {"EchoTime": te_s[echo - 1], "MagneticFieldStrength": b0_t,
                               **(sidecar_extra or {})}
                    sidecar.update((sidecar_overrides or {}).get(stem, {}))
                    sidecar = {k: v for k, v in sidecar.items() if v is not None}
                    (anat / f"{stem}.json").write_text(json.dumps(sidecar))
    return root


@pytest.fixture
def skeleton(tmp_path):
    return lambda **kw: make_skeleton(tmp_path / "bids", **kw)
