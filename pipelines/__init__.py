"""Pipelines of this repository. ``reference`` is the reference ML training pipeline."""
