"""Registered, serializable Keras 3 layers; importing this module registers them."""

from yt8m_segments.layers.dbof import DBoF
from yt8m_segments.layers.frame_normalization import L2NormalizeFrames
from yt8m_segments.layers.logistic import LogisticClassifier
from yt8m_segments.layers.moe import MoeClassifier

__all__ = ["DBoF", "L2NormalizeFrames", "LogisticClassifier", "MoeClassifier"]
