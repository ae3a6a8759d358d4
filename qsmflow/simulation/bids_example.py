"""Former home of the MNI-phantom example generator; ``bids_examples/`` is now made by
:mod:`qsmflow.simulation.example_dataset` from the whole-head phantom.

Only the acquisition grid of the MNI phantom is left here, for the importers that still
name this module (``tests/algorithms/test_phase_pipeline.py``,
``benchmarks/bench_phase.py``); it lives in :mod:`qsmflow.simulation.phantom`. Delete this
module once they import it from there.
"""

from .phantom import acquisition_affine

__all__ = ["acquisition_affine"]
