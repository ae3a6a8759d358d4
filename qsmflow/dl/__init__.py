"""PyTorch code: the dipole operator, the NSIDL model, its weights and inference.

Nothing in this package knows about files in BIDS, NIfTI headers or Nipype, nor about
the phantoms NSIDL was trained on (training lives in :mod:`qsmflow.training`).
"""
