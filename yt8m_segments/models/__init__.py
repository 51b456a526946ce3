"""Models built by name from flags or a config dict."""

from yt8m_segments.models.registry import build_model

__all__ = ["build_model"]
