"""Reports: ROI tables, group statistics and figures (pandas, scipy, matplotlib)."""
