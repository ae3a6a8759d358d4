"""Numbers a study reports: ROI statistics per scan and group-level models."""
