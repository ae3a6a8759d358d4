"""Numerical head phantoms built from the MNI152 anatomy that nilearn ships.

Used to generate ``bids_examples/``, the NSIDL training data and the benchmarks.
"""
