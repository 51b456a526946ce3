"""Models built by name from flags or a config dict (`python -m yt8m_segments.models --list`)."""

from yt8m_segments.models import mixture
from yt8m_segments.models.registry import ModelConfig
from yt8m_segments.models.registry import build_model
from yt8m_segments.models.registry import count_parameters
from yt8m_segments.models.registry import registered_models

__all__ = ["ModelConfig", "build_model", "count_parameters", "mixture",
           "registered_models"]
