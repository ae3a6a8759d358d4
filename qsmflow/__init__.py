"""qsmflow: a BIDS-app for quantitative susceptibility mapping."""

__version__ = "0.1.0"
