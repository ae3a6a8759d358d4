"""Numerical QSM algorithms: numpy/scipy arrays in, arrays out.

Nothing in this package knows about files, NIfTI headers, BIDS or Nipype.
"""
