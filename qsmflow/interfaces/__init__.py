"""Thin Nipype interfaces: load files, call algorithms/dl, save files."""
