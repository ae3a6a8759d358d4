"""PyTorch code: the dipole operator, the NSIDL model, inference, training and weights.

Nothing in this package knows about files in BIDS, NIfTI headers or Nipype.
"""
