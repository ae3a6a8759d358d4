"""NSIDL's training validation uses the one NRMSE of qsmflow.algorithms.metrics."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qsmflow.training.train import batch_nrmse_percent, build_parser


def test_batch_nrmse_is_over_the_whole_batch_inside_the_masks(rng):
    truth = torch.zeros(2, 1, 5, 6, 7)
    truth[0] = 1.0
    truth[1] = 2.0
    mask = torch.zeros_like(truth)
    mask[:, :, :3] = 1.0
    estimate = truth * 0.9 + torch.from_numpy(rng.normal(size=truth.shape).astype(np.float32)) \
        * (1 - mask)  # garbage outside the masks
    batch = SimpleNamespace(chi_ppm=truth, mask=mask)
    # Both items are off by 10% of their own value, so by 10% of the batch norm.
    assert batch_nrmse_percent(estimate, batch) == pytest.approx(10.0, rel=1e-5)


def test_console_script_parser_keeps_its_options():
    args = build_parser().parse_args(["--out", "x", "--steps", "3"])
    assert args.steps == 3 and args.patch == 48 and args.seed == 20251125
