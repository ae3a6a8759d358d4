"""BIDS input discovery and validation, derivative naming and dataset_description."""
