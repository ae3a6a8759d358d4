"""The FFT thread count follows the node's CPUs, not the whole machine's."""

import os

import numpy as np
import pytest

from qsmflow.algorithms.fourier import available_cpus, fft_threads, fft_workers, irfftn, rfftn


def test_default_threads_are_the_cpus_this_process_may_use():
    assert fft_workers() == available_cpus()
    if hasattr(os, "sched_getaffinity"):
        assert available_cpus() == len(os.sched_getaffinity(0))


def test_fft_threads_sets_and_restores(rng):
    before = fft_workers()
    x = rng.random((16, 12, 10))
    reference = irfftn(rfftn(x), x.shape)
    with fft_threads(1):
        assert fft_workers() == 1
        np.testing.assert_allclose(irfftn(rfftn(x), x.shape), reference, atol=1e-12)
        with fft_threads(2):
            assert fft_workers() == 2
        assert fft_workers() == 1
    assert fft_workers() == before
    with pytest.raises(ValueError, match=">= 1"):
        with fft_threads(0):
            pass
    assert fft_workers() == before
