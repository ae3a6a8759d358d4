"""Numerical head phantoms.

``phantom`` builds heads from the MNI152 anatomy that nilearn ships (NSIDL v1's training
data, the reliability tests, older benchmarks); ``wholehead`` simulates whole BrainWeb heads
(scalp, fat, bone, marrow, sinuses), from which ``example_dataset`` makes ``bids_examples/``.
"""
