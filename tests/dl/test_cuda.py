"""``--device cuda`` gives the CPU's chi within the stated tolerance (runs only with a GPU;
``benchmarks/check_nsidl_cuda.py`` records the full-size check)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_matches_cpu_within_tolerance():
    from check_nsidl_cuda import TOLERANCE_PERCENT, difference, run, sphere_phantom

    from qsmflow.dl.weights import default_weights_path

    _, mask, field = sphere_phantom((72, 80, 64), np.random.default_rng(7), voxel_mm=1.0)
    weights = default_weights_path()
    cpu, _, _ = run(field, mask, 1.0, weights, "cpu")
    gpu, _, _ = run(field, mask, 1.0, weights, "cuda")
    assert difference(gpu, cpu, mask)["relative_l2_percent"] <= TOLERANCE_PERCENT
