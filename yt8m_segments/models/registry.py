"""Build a frame-level model from names and hyperparameters, never by editing code.

A model is: frames [B, T, D] + mask [B, T] -> per-frame L2 norm -> aggregator
-> classifier -> probabilities [B, num_classes]. The whole description is a
plain dict (`ModelConfig.to_dict`) that training stores beside the weights, so
fine-tuning and inference can rebuild the architecture with other classes.
"""

import dataclasses

import keras

from yt8m_segments import layers

AGGREGATORS = {
    "DBoF": lambda hp: layers.DBoF(
        cluster_size=hp.get("dbof_cluster_size", 8192),
        hidden_size=hp.get("dbof_hidden_size", 1024),
        pooling=hp.get("dbof_pooling", "max"),
        name="aggregator"),
}

CLASSIFIERS = {
    "Logistic": lambda num_classes, hp: layers.LogisticClassifier(
        num_classes, l2_penalty=hp.get("l2_penalty", 1e-8), name="classifier"),
    "MoE": lambda num_classes, hp: layers.MoeClassifier(
        num_classes, num_mixtures=hp.get("moe_num_mixtures", 2),
        l2_penalty=hp.get("l2_penalty", 1e-8), name="classifier"),
}


# The starter code's names for the same pieces, so its users' flags still work.
ALIASES = {"DbofModel": "DBoF", "MoeModel": "MoE", "LogisticModel": "Logistic"}


@dataclasses.dataclass
class ModelConfig:
    """Everything needed to rebuild a model's architecture."""

    model: str
    classifier: str
    num_classes: int
    feature_size: int
    hparams: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config):
        return cls(**config)


def _choose(table, name, what):
    name = ALIASES.get(name, name)
    if name not in table:
        raise ValueError(f"unknown {what} '{name}'; choose one of {sorted(table)}")
    return table[name]


def build_model(config):
    """A functional Keras model for `config` (a ModelConfig)."""
    make_aggregator = _choose(AGGREGATORS, config.model, "model")
    make_classifier = _choose(CLASSIFIERS, config.classifier, "classifier")
    frames = keras.Input((None, config.feature_size), name="frames")
    mask = keras.Input((None,), dtype="bool", name="mask")
    x = layers.L2NormalizeFrames(name="frame_l2_norm")(frames)
    x = make_aggregator(config.hparams)(x, mask=mask)
    probabilities = make_classifier(config.num_classes, config.hparams)(x)
    return keras.Model({"frames": frames, "mask": mask}, probabilities,
                       name=f"{config.model}_{config.classifier}")
