"""Inputs, numpy activations and layer tables the layer tests share.

Not a test module: each tests/layers/test_*.py imports what it needs with
`from layer_inputs import ...` (pytest puts this directory on sys.path).
"""

import numpy as np

from yt8m_segments.layers.gated_dbof import GatedDBoF
from yt8m_segments.layers.netfv import NetFV
from yt8m_segments.layers.netvlad import NetVLAD
from yt8m_segments.layers.nextvlad import NeXtVLAD
from yt8m_segments.layers.pooling import FramePooling
from yt8m_segments.layers.recurrent import RecurrentAggregator
from yt8m_segments.layers.soft_dbof import SoftDBoF

RNG = np.random.default_rng(0)
D = 16  # features per frame
K = 4   # clusters of the VLAD-family cases


def frames(batch=3, time=7, dim=D):
    """Random frames [batch, time, dim], float32."""
    return RNG.normal(size=(batch, time, dim)).astype("float32")


def lengths_mask(lengths, time):
    """[len(lengths), time] bool: row i has its first lengths[i] frames real."""
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


# ---- numpy activations for the references ----

def relu6(x):
    return np.clip(x, 0, 6)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ---- layer tables ----

# (class, kwargs, output size, trainable weights, non-trainable weights: 3
# statistics per batch norm) for the frame aggregators.
AGGREGATORS = {
    "gated_dbof": (GatedDBoF, {"cluster_size": 12, "hidden_size": 8,
                               "gate_bottleneck": 6, "add_batch_norm": True},
                   8, 12, 12),
    "soft_dbof": (SoftDBoF, {"cluster_size": 12, "hidden_size": 8,
                             "pooling": "both", "add_batch_norm": True},
                  8, 8, 9),
    "soft_dbof_average": (SoftDBoF, {"cluster_size": 12, "hidden_size": 8,
                                     "pooling": "average"}, 8, 8, 9),
    "gru": (RecurrentAggregator, {"cell": "gru", "units": 8,
                                  "num_layers": 2}, 8, 6, 0),
    "lstm": (RecurrentAggregator, {"cell": "lstm", "units": 8,
                                   "num_layers": 1}, 8, 3, 0),
    "average": (FramePooling, {"method": "average"}, D, 0, 0),
    "max": (FramePooling, {"method": "max"}, D, 0, 0),
}
ORDERLESS = ["gated_dbof", "soft_dbof", "soft_dbof_average", "average", "max"]

# The same for NetVLAD (and variants), NeXtVLAD and NetFV, on D features.
CASES = {
    "netvlad": (NetVLAD, {"cluster_size": K}, K * D, 6, 6),
    "light": (NetVLAD, {"cluster_size": K, "light": True}, K * D, 5, 6),
    "non_local": (NetVLAD, {"cluster_size": K, "non_local": True,
                            "nonlocal_size": 3}, K * D, 10, 6),
    "light_non_local_no_bn": (
        NetVLAD, {"cluster_size": K, "add_batch_norm": False, "light": True,
                  "non_local": True}, K * D, 6, 0),
    "nextvlad": (NeXtVLAD, {"cluster_size": K, "groups": 4, "expansion": 2},
                 K * 2 * D // 4, 10, 6),
    "netfv": (NetFV, {"cluster_size": K}, 2 * K * D, 7, 6),
}
assert not set(AGGREGATORS) & set(CASES), "make() needs distinct names"

# ResNetLike's modalities in the tests: 12 "rgb" + 4 "audio" features.
RESNET_SIZES = [12, 4]


def make(name):
    """A fresh layer for a name of AGGREGATORS or CASES."""
    layer_cls, kwargs, *_ = AGGREGATORS.get(name) or CASES[name]
    return layer_cls(**kwargs)
