"""Nipype workflow factories: wiring only, no computation and no header reading."""
