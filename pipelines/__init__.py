"""Runnable example pipelines: a sample warehouse, the sync itself, and the demo."""
