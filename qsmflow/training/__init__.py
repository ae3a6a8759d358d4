"""Training code: NSIDL's synthetic data generator and its training loop.

Nothing at inference imports this package. It may import :mod:`qsmflow.dl` (the model
it trains) and :mod:`qsmflow.simulation` (the head models it draws patches from).
"""
