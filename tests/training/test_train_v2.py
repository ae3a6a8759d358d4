"""v2 training: a run stopped after a checkpoint and resumed equals the uninterrupted run."""

import json

import numpy as np
import pytest

from qsmflow.training.bank import BankVolume
from qsmflow.training.train import main
from qsmflow.training.v2data import HELDOUT, IN_DISTRIBUTION, split_volumes


def _tiny_bank(path, n=2):
    path.mkdir()
    rng = np.random.default_rng(0)
    shape = (40, 44, 36)
    g = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    brain = ((g / np.array([16, 18, 14])[:, None, None, None]) ** 2).sum(0) <= 1
    names = []
    for i in range(n):
        chi = (0.03 * rng.standard_normal(shape)).astype(np.float32) * brain
        b0 = np.array([0.1, 0.0, 1.0]) / np.linalg.norm([0.1, 0.0, 1.0])
        BankVolume(chi, 0.1 * chi, brain, np.full(shape, 0.8, np.float32),
                   np.full(shape, 20.0, np.float32), b0, 1.0, f"mni{i}").save(
                       path / f"vol_{i}.npz")
        names.append(f"vol_{i}.npz")
    (path / "manifest.json").write_text(json.dumps({"subjects": ["41"], "volumes": names}))


def test_split_keeps_the_last_volume_of_each_kind_out_of_training():
    vols = [type("V", (), {"source": s})() for s in
            ("brainweb41", "brainweb41", "brainweb42", "mni0", "mni1")]
    train, val = split_volumes(vols)
    assert [v.source for v in val] == ["brainweb42", "mni1"]
    assert len(train) == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resumed_run_continues_from_its_step_with_the_same_losses(tmp_path):
    _tiny_bank(tmp_path / "bank")
    common = ["--data", "v2", "--bank", str(tmp_path / "bank"), "--steps", "3",
              "--checkpoint-every", "1", "--patch", "16", "--iterations", "2", "--width",
              "2", "--per-iteration", "--n-validation", "2", "--threads", "1"]
    main(["--out", str(tmp_path / "full"), *common])
    main(["--out", str(tmp_path / "cut"), *common, "--stop-after", "2"])
    main(["--out", str(tmp_path / "cut"), *common])
    full = json.loads((tmp_path / "full" / "training_log.json").read_text())
    cut = json.loads((tmp_path / "cut" / "training_log.json").read_text())
    assert [s["first_step"] for s in cut["segments"]] == [0, 2]
    assert cut["losses"] == pytest.approx(full["losses"], rel=1e-5)
    last = cut["validation"][-1]
    assert f"{HELDOUT}_nrmse_nsidl_percent" in last
    assert f"{IN_DISTRIBUTION}_nrmse_nsidl_percent" in last
    assert last[f"{HELDOUT}_nrmse_nsidl_percent"] == pytest.approx(
        full["validation"][-1][f"{HELDOUT}_nrmse_nsidl_percent"], rel=1e-4)
    assert cut["bank"]["in_distribution_validation_volumes"] == ["mni1"]
