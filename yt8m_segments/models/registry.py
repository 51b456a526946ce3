"""Build a frame-level model from names and hyperparameters, never by editing code.

A model is: frames [B, T, D] + mask [B, T] -> per-frame L2 norm -> aggregator
-> head -> classifier -> probabilities [B, num_classes]. The whole description
is a plain dict (`ModelConfig.to_dict`) that training stores beside the
weights, so fine-tuning and inference can rebuild the architecture with other
classes.

Composition of a frame model (`MODELS[name]`, hyperparameters in `hparams`):
  aggregator  per modality where the papers ran it so (NetVLAD, LightNetVLAD,
              NonLocalNetVLAD, NetFV, NeXtVLAD: `feature_sizes` splits the
              frame, the first modality (rgb) gets K clusters (and G groups),
              every other (audio) K/2 (and G/2), outputs concatenated), else
              over the concatenated frame
  [dropout]   `dropout` > 0
  [hidden]    `hidden_size` > 0: FC without bias + BN + `hidden_activation`
  [gating]    `gating`: "none", "willow" (full-matrix context gating) or "se"
              (squeeze-excitation, reduction `gating_reduction`)
  [mean frame] `mean_frame_path`: the mean of the real frames [B, D] joins
              the head's output, so the classifier also reads the mean frame
              linearly (DBoF's default; see `_features`)
  classifier  "MoE" or "Logistic" (the layer is always named "classifier")
Each model's defaults (`MODELS[name].defaults`) are its paper's sizes;
`hparams` override them. `resolve_hparams` gives the merged dict, which is
what training stores.

Mixtures: `Mix<name>` for any name here (`mixture_size` copies of it), or
`Mixture` with `mixture_models` (a list of names, or one string like
"NeXtVLAD+SoftDBoF"): see models/mixture.py.

Video-level ResNetLike (2018) works on frames too: its input is the mean of
the real frames (for ResNetLikeConcat also their max), i.e. mean_rgb /
mean_audio recomputed from the (L2-normalised) frames of the window.
"""

import dataclasses
import json

import keras

from yt8m_segments import layers
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.models import mixture

DEFAULT_FEATURE_SIZES = (1024, 128)  # rgb, audio

# Hyperparameters every model understands (head, classifier, mixture, input).
COMMON_DEFAULTS = {
    "feature_sizes": None,        # None: [1024, 128] for 1152 features, else one
    "dropout": 0.0,
    "hidden_size": 0,
    "hidden_activation": "relu6",
    "gating": "none",
    "gating_reduction": 8,
    "mean_frame_path": False,
    "moe_num_mixtures": 2,
    "l2_penalty": 1e-8,
    "initial_probability": layers.moe.DEFAULT_INITIAL_PROBABILITY,
    "mixture_size": 3,
    "mixture_models": None,
    "distill_temperature": mixture.DEFAULT_TEMPERATURE,
    "distill_weight": mixture.DEFAULT_DISTILL_WEIGHT,
    "distill_teacher_gradients": mixture.DEFAULT_TEACHER_GRADIENTS,
}

WILLOW_HEAD = {"hidden_size": 1024, "hidden_activation": "relu6",
               "gating": "willow"}
NETVLAD = {"netvlad_cluster_size": 256, "nonlocal_size": None, **WILLOW_HEAD}
RNN = {"rnn_units": 1024, "rnn_layers": 2}
RESNET = {"resnet_branch_size": 1024, "resnet_hidden_size": 1024,
          "resnet_branch_blocks": 1, "resnet_trunk_blocks": 2,
          "resnet_dropout": 0.3}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A frame model: how to aggregate, its default sizes and classifier."""

    aggregate: object          # (frames, mask, hparams, prefix) -> [B, F]
    defaults: dict
    classifier: str            # the paper's classifier, for --list
    source: str                # where the model and its sizes come from


def _half(value, modality):
    """Sizes of modality 0 (rgb) as given, of the others (audio) halved."""
    return value if modality == 0 else max(1, value // 2)


def _per_modality(make_layer):
    """An aggregate function running `make_layer(hp, modality, name)` per modality."""
    def aggregate(frames, mask, hp, prefix):
        sizes = hp["feature_sizes"]
        if len(sizes) == 1:
            return make_layer(hp, 0, prefix + "aggregator")(frames, mask=mask)
        outputs, start = [], 0
        for i, size in enumerate(sizes):
            part = layers.FeatureSlice(start, start + size,
                                       name=f"{prefix}features_{i}")(frames)
            outputs.append(make_layer(hp, i, f"{prefix}aggregator_{i}")(
                part, mask=mask))
            start += size
        return keras.layers.Concatenate(name=prefix + "aggregator")(outputs)
    return aggregate


def _whole(make_layer):
    """An aggregate function running one `make_layer(hp, name)` on all features."""
    def aggregate(frames, mask, hp, prefix):
        return make_layer(hp, prefix + "aggregator")(frames, mask=mask)
    return aggregate


def _netvlad(light=False, non_local=False):
    def make(hp, modality, name):
        return layers.NetVLAD(
            _half(hp["netvlad_cluster_size"], modality), light=light,
            non_local=non_local, nonlocal_size=hp["nonlocal_size"], name=name)
    return make


def _nextvlad(hp, modality, name):
    return layers.NeXtVLAD(_half(hp["nextvlad_cluster_size"], modality),
                           groups=_half(hp["nextvlad_groups"], modality),
                           expansion=hp["nextvlad_expansion"], name=name)


def _resnet_like(variant):
    def aggregate(frames, mask, hp, prefix):
        pooled = layers.FramePooling("average", name=prefix + "mean_frames")(
            frames, mask=mask)
        if variant == "concat":
            peak = layers.FramePooling("max", name=prefix + "max_frames")(
                frames, mask=mask)
            pooled = keras.layers.Concatenate(name=prefix + "pooled_frames")(
                [pooled, peak])
        return layers.ResNetLike(
            feature_sizes=hp["feature_sizes"], variant=variant,
            branch_size=hp["resnet_branch_size"],
            hidden_size=hp["resnet_hidden_size"],
            branch_blocks=hp["resnet_branch_blocks"],
            trunk_blocks=hp["resnet_trunk_blocks"],
            dropout=hp["resnet_dropout"], name=prefix + "aggregator")(pooled)
    return aggregate


def _rnn(cell):
    return _whole(lambda hp, name: layers.RecurrentAggregator(
        cell, units=hp["rnn_units"], num_layers=hp["rnn_layers"], name=name))


MODELS = {
    "DBoF": ModelSpec(
        _whole(lambda hp, name: layers.DBoF(
            cluster_size=hp["dbof_cluster_size"],
            hidden_size=hp["dbof_hidden_size"], pooling=hp["dbof_pooling"],
            name=name)),
        # Sized for a CPU try-out and small data, by measurement (README,
        # "Results against baselines"); the starter's 8192 clusters, max
        # pooling and hidden 1024 are flags/p4_dbof.flags.
        {"dbof_cluster_size": 256, "dbof_hidden_size": 128,
         "dbof_pooling": "average", "dropout": 0.5, "mean_frame_path": True},
        "MoE", "starter code DbofModel's design at CPU size: 256 clusters, "
        "average pooling, hidden 128, dropout 0.5, plus the mean frame, "
        "MoE 2 (the starter's 8192 / max / 1024: flags/p4_dbof.flags)"),
    "GatedDBoF": ModelSpec(
        _whole(lambda hp, name: layers.GatedDBoF(
            cluster_size=hp["dbof_cluster_size"],
            hidden_size=hp["dbof_hidden_size"],
            gate_bottleneck=hp["gate_bottleneck"], name=name)),
        {"dbof_cluster_size": 4096, "dbof_hidden_size": 1024,
         "gate_bottleneck": 1024, "gating": "willow"},
        "MoE", "WILLOW 2017: 4096 clusters, hidden 1024, context gating, "
        "MoE 2"),
    "SoftDBoF": ModelSpec(
        _whole(lambda hp, name: layers.SoftDBoF(
            cluster_size=hp["dbof_cluster_size"],
            hidden_size=hp["dbof_hidden_size"], pooling=hp["dbof_pooling"],
            name=name)),
        {"dbof_cluster_size": 8000, "dbof_hidden_size": 1024,
         "dbof_pooling": "average", "gating": "willow"},
        "MoE", "WILLOW 2017: 8000 clusters, hidden 1024, context gating, "
        "MoE 2"),
    "NetVLAD": ModelSpec(
        _per_modality(_netvlad()), NETVLAD, "MoE",
        "WILLOW 2017 late fusion: 256 (rgb) / 128 (audio) clusters, hidden "
        "1024, context gating, MoE 2"),
    "LightNetVLAD": ModelSpec(
        _per_modality(_netvlad(light=True)), NETVLAD, "MoE",
        "WILLOW 2017 LightVLAD, late fusion, sizes as NetVLAD"),
    "EarlyNetVLAD": ModelSpec(
        _whole(lambda hp, name: layers.NetVLAD(
            hp["netvlad_cluster_size"], nonlocal_size=hp["nonlocal_size"],
            name=name)),
        NETVLAD, "MoE",
        "Tang et al. 2018 early fusion: one NetVLAD (256) over rgb+audio; "
        "head as NetVLAD"),
    "NonLocalNetVLAD": ModelSpec(
        _per_modality(_netvlad(non_local=True)), NETVLAD, "MoE",
        "Tang et al. 2018 non-local NetVLAD, late fusion, sizes as NetVLAD"),
    "NeXtVLAD": ModelSpec(
        _per_modality(_nextvlad),
        {"nextvlad_cluster_size": 112, "nextvlad_groups": 8,
         "nextvlad_expansion": 2, "dropout": 0.5, "hidden_size": 2048,
         "hidden_activation": "linear", "gating": "se",
         "gating_reduction": 8},
        "Logistic", "Lin et al. 2018: K=112, G=8, lambda=2 (audio K/2, G/2), "
        "dropout 0.5, hidden 2048, SE r=8, logistic"),
    "NetFV": ModelSpec(
        _per_modality(lambda hp, modality, name: layers.NetFV(
            _half(hp["netfv_cluster_size"], modality), name=name)),
        {"netfv_cluster_size": 128, **WILLOW_HEAD},
        "MoE", "WILLOW 2017 late fusion: 128 (rgb) / 64 (audio) clusters, "
        "hidden 1024, context gating, MoE 2"),
    "GRU": ModelSpec(_rnn("gru"), RNN, "MoE",
                     "starter-style 2 x 1024 GRU, last state"),
    "LSTM": ModelSpec(_rnn("lstm"), RNN, "MoE",
                      "starter LstmModel: 2 x 1024 LSTM, last state"),
    "AveragePooling": ModelSpec(
        _whole(lambda hp, name: layers.FramePooling("average", name=name)),
        {}, "Logistic", "mean of real frames (starter FrameLevelLogistic)"),
    "MaxPooling": ModelSpec(
        _whole(lambda hp, name: layers.FramePooling("max", name=name)),
        {}, "Logistic", "max of real frames"),
    "ResNetLike": ModelSpec(
        _resnet_like("plain"), RESNET, "Logistic",
        "2018 video-level ResNetLike on the mean frame; sizes ours"),
    "ResNetLikeImbalance": ModelSpec(
        _resnet_like("imbalance"), RESNET, "Logistic",
        "ResNetLike, branch widths follow the modality widths; sizes ours"),
    "ResNetLikeConcat": ModelSpec(
        _resnet_like("concat"), RESNET, "Logistic",
        "ResNetLike on [mean, max] frames; sizes ours"),
}

CLASSIFIERS = {
    "Logistic": lambda num_classes, hp: layers.LogisticClassifier(
        num_classes, l2_penalty=hp["l2_penalty"],
        initial_probability=hp["initial_probability"], name="classifier"),
    "MoE": lambda num_classes, hp: layers.MoeClassifier(
        num_classes, num_mixtures=hp["moe_num_mixtures"],
        l2_penalty=hp["l2_penalty"],
        initial_probability=hp["initial_probability"], name="classifier"),
}

MIX_PREFIX = "Mix"
MIXTURE = "Mixture"

# The starter code's names for the same pieces, so its users' flags still work.
ALIASES = {"DbofModel": "DBoF", "MoeModel": "MoE", "LogisticModel": "Logistic",
           "NeXtVLADModel": "NeXtVLAD", "NetVLADModelLF": "NetVLAD",
           "LstmModel": "LSTM", "FrameLevelLogisticModel": "AveragePooling"}


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


def registered_models():
    """Every name --model takes (besides `Mixture`): the models and Mix<model>."""
    return list(MODELS) + [MIX_PREFIX + name for name in MODELS]


def _choose(table, name, what):
    name = ALIASES.get(name, name)
    if name not in table:
        raise ValueError(f"unknown {what} '{name}'; choose one of {sorted(table)}")
    return name


def sub_models(name, hparams=None):
    """The frame models inside model `name`: [name] unless it is a mixture."""
    hparams = hparams or {}
    name = ALIASES.get(name, name)
    if name == MIXTURE:
        names = hparams.get("mixture_models")
        if not names:
            raise ValueError("model 'Mixture' needs the hparam mixture_models "
                             "(a list of model names)")
        if isinstance(names, str):
            names = [n for n in names.replace("+", ",").split(",") if n]
        return [_choose(MODELS, n, "model") for n in names]
    if name.startswith(MIX_PREFIX) and name not in MODELS:
        base = _choose(MODELS, name[len(MIX_PREFIX):].lstrip("-"), "model")
        size = hparams.get("mixture_size", COMMON_DEFAULTS["mixture_size"])
        return [base] * int(size)
    return [_choose(MODELS, name, "model")]


def is_mixture_name(name):
    name = ALIASES.get(name, name)
    return name == MIXTURE or (name.startswith(MIX_PREFIX) and name not in MODELS)


def known_hparams():
    keys = set(COMMON_DEFAULTS)
    for spec in MODELS.values():
        keys.update(spec.defaults)
    return keys


def resolve_hparams(name, hparams=None, feature_size=None):
    """Defaults of model `name` (and its sub-models) overlaid with `hparams`.

    Unknown keys are an error (a typo in --model_hparams should not pass
    silently). `feature_sizes` defaults to rgb/audio (1024, 128) when
    `feature_size` is 1152, else one modality of `feature_size`.
    """
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - known_hparams())
    if unknown:
        raise ValueError(f"unknown model hyperparameters {unknown}; known: "
                         f"{sorted(known_hparams())}")
    resolved = dict(COMMON_DEFAULTS)
    for sub in dict.fromkeys(sub_models(name, hparams)):
        resolved.update(MODELS[sub].defaults)
    resolved.update(hparams)
    sizes = resolved["feature_sizes"]
    if sizes is None and feature_size is not None:
        sizes = (DEFAULT_FEATURE_SIZES if feature_size == sum(
            DEFAULT_FEATURE_SIZES) else (feature_size,))
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if feature_size is not None and sum(sizes) != feature_size:
            raise ValueError(f"feature_sizes {sizes} do not add up to the "
                             f"{feature_size} input features")
    resolved["feature_sizes"] = sizes
    return resolved


def _split_top_level(text):
    """Split on commas outside [] / {} / quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_hparams(texts):
    """Hyperparameters from --model_hparams strings, later ones winning.

    Each string is a JSON object ('{"hidden_size": 2048}') or
    key=value,key=value; a value is read as JSON when it parses (numbers,
    true/false/null, [lists]), else kept as a string:
    'nextvlad_cluster_size=112,gating=se,feature_sizes=[1024,128]'.
    """
    if isinstance(texts, str):
        texts = [texts]
    hparams = {}
    for text in texts or []:
        text = text.strip()
        if not text:
            continue
        if text.startswith("{"):
            hparams.update(json.loads(text))
            continue
        for item in _split_top_level(text):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"model hparam '{item}' is not key=value")
            try:
                hparams[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                hparams[key.strip()] = value.strip()
    return hparams


def _head(x, hp, prefix):
    """dropout -> FC (no bias) + BN -> context gating, each when asked for."""
    if hp["dropout"]:
        x = keras.layers.Dropout(hp["dropout"], name=prefix + "dropout")(x)
    if hp["hidden_size"]:
        x = DenseBatchNorm(hp["hidden_size"], hp["hidden_activation"],
                           name=prefix + "hidden")(x)
    if hp["gating"] not in ("none", "willow", "se"):
        raise ValueError(f"unknown gating '{hp['gating']}'; choose one of "
                         "['none', 'se', 'willow']")
    if hp["gating"] != "none":
        reduction = hp["gating_reduction"] if hp["gating"] == "se" else None
        x = layers.ContextGating(reduction=reduction, name=prefix + "gating")(x)
    return x


def _features(name, frames, mask, hp, prefix):
    """Aggregator + head of frame model `name`: [B, H] before the classifier.

    With `mean_frame_path` the mean of the real frames [B, D] joins the
    head's output: the classifier then holds a linear reader of the mean
    frame (a window-mean logistic, a ridge-like video model) beside the
    aggregator, which a bottleneck of relu6 clusters only approximates.
    """
    features = _head(MODELS[name].aggregate(frames, mask, hp, prefix), hp,
                     prefix)
    if not hp["mean_frame_path"]:
        return features
    mean = layers.FramePooling("average", name=prefix + "mean_frame")(
        frames, mask=mask)
    return keras.layers.Concatenate(name=prefix + "features")([features, mean])


def build_model(config):
    """A functional Keras model for `config` (a ModelConfig).

    Inputs {"frames": [B, T, D], "mask": [B, T] bool}; one output, the
    probabilities [B, num_classes]. For mixtures see `mixture.training_model`.
    """
    hp = resolve_hparams(config.model, config.hparams, config.feature_size)
    classifier = _choose(CLASSIFIERS, config.classifier, "classifier")
    subs = sub_models(config.model, hp)
    frames = keras.Input((None, config.feature_size), name="frames")
    mask = keras.Input((None,), dtype="bool", name="mask")
    x = layers.L2NormalizeFrames(name="frame_l2_norm")(frames)
    if not is_mixture_name(config.model):
        features = _features(subs[0], x, mask, hp, "")
        probabilities = CLASSIFIERS[classifier](config.num_classes, hp)(features)
    else:
        if classifier != "Logistic":
            raise ValueError(
                f"mixture model '{config.model}' needs logits from its "
                "sub-models, so its heads are logistic: pass "
                "--video_level_classifier_model=Logistic")
        gate = layers.MixtureGate(len(subs), name="mixture_gate")(x, mask=mask)
        features = [_features(sub, x, mask, hp, f"expert_{i}_")
                    for i, sub in enumerate(subs)]
        probabilities, _, _ = layers.MixtureClassifier(
            config.num_classes, len(subs), l2_penalty=hp["l2_penalty"],
            initial_probability=hp["initial_probability"],
            name="classifier")([gate, *features])
    return keras.Model({"frames": frames, "mask": mask}, probabilities,
                       name=f"{config.model}_{classifier}")


def count_parameters(model, classifier=None, num_classes=3862,
                     feature_sizes=DEFAULT_FEATURE_SIZES, hparams=None):
    """Weights of model `model` (all of them, batch-norm statistics included).

    Builds the graph without initialising a single weight (a Keras stateless
    scope), so even the 900M-weight mixtures count in milliseconds.
    """
    spec_classifier = (
        "Logistic" if is_mixture_name(model)
        else MODELS[_choose(MODELS, model, "model")].classifier)
    hparams = {"feature_sizes": list(feature_sizes), **(hparams or {})}
    config = ModelConfig(model, classifier or spec_classifier, num_classes,
                         sum(feature_sizes), hparams)
    return count_config_parameters(config)


def count_config_parameters(config):
    """Weights of the model a ModelConfig describes, without initialising any
    (batch-norm statistics included, their scalar update counters not)."""
    with keras.StatelessScope(initialize_variables=False):
        model = build_model(config)
        counters = sum(1 for weight in model.weights
                       if weight.path.endswith("/num_updates"))
        return model.count_params() - counters


def describe(name):
    """One line on where model `name` and its default sizes come from."""
    subs = sub_models(name)
    text = MODELS[subs[0]].source
    if is_mixture_name(name):
        text = (f"{len(subs)} x {subs[0]} + gate, logistic heads, "
                f"on-the-fly distillation")
    return text


__all__ = ["ModelConfig", "build_model", "resolve_hparams", "parse_hparams",
           "registered_models", "count_parameters"]
