"""Temporal concept localization on YouTube-8M Segments, in TF2 and Keras 3."""

__version__ = "0.1.0"
