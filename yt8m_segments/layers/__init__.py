"""Registered, serializable Keras 3 layers; importing this module registers them."""

from yt8m_segments.layers.context_gating import ContextGating
from yt8m_segments.layers.dbof import DBoF
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.feature_slice import FeatureSlice
from yt8m_segments.layers.frame_normalization import L2NormalizeFrames
from yt8m_segments.layers.gated_dbof import GatedDBoF
from yt8m_segments.layers.logistic import LogisticClassifier
from yt8m_segments.layers.mixture_classifier import MixtureClassifier
from yt8m_segments.layers.mixture_gate import MixtureGate
from yt8m_segments.layers.moe import MoeClassifier
from yt8m_segments.layers.netfv import NetFV
from yt8m_segments.layers.netvlad import NetVLAD
from yt8m_segments.layers.nextvlad import NeXtVLAD
from yt8m_segments.layers.pooling import FramePooling
from yt8m_segments.layers.recurrent import RecurrentAggregator
from yt8m_segments.layers.resnet_like import ResNetLike
from yt8m_segments.layers.soft_dbof import SoftDBoF

__all__ = ["ContextGating", "DBoF", "DenseBatchNorm", "FeatureSlice",
           "FramePooling", "GatedDBoF", "L2NormalizeFrames",
           "LogisticClassifier", "MixtureClassifier", "MixtureGate",
           "MoeClassifier", "NetFV", "NetVLAD", "NeXtVLAD",
           "RecurrentAggregator", "ResNetLike", "SoftDBoF"]
