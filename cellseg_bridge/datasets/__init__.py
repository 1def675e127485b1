"""Readers of public annotated datasets used for training and evaluation (not needed to segment)."""
