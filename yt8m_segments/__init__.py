"""Temporal concept localization on YouTube-8M Segments, in TF2 and Keras 3."""

from yt8m_segments import cli as _cli

__version__ = "0.1.0"

# Before any module imports TensorFlow: a command starts without its banners.
_cli.quiet_start()
