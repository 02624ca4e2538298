"""Pawpularity MLOps library."""
