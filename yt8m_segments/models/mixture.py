"""Mixture of sub-models with on-the-fly distillation (NeXtVLAD 2018, MOD 2019).

N sub-models ("experts": same or different aggregators, each with its own
head) each end in a logistic layer giving logits z_m [B, C]. A gate over the
mean real frame, a = softmax(FC(BN(mean frame))) [B, N], mixes them:
z_e = sum_m a_m z_m. The model's only output is sigmoid(z_e), so inference and
fine-tuning treat a mixture like any other model.

Training needs the logits too: `training_model(model)` is a second
keras.Model over the same layers (shared weights) whose outputs are the dict
{"probabilities": sigmoid(z_e) [B, C], "logits": z_e [B, C],
 "expert_logits": z_m stacked [B, N, C]}, and `mixture_loss` /
`mixture_loss_terms` turn them into
  BCE(sigmoid z_e) + sum_m BCE(sigmoid z_m)
  + lambda * mean_batch sum_m KL(softmax(z_e / T) || softmax(z_m / T)),
softmax over the class axis. `teacher_gradients=False` (default) puts a
stop_gradient on z_e inside the KL, so the distillation term teaches the
sub-models and never moves the mixture (gate included) towards them.

Sub-models need logits, so their heads are always logistic: MoE outputs
probabilities. All N heads live in one layer named "classifier"
(`MixtureClassifier`), whose `class_subset_weights` slices every head, so
fine-tuning's "slice the layer named classifier" works unchanged.
"""

import keras
import numpy as np
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.batch_norm import BatchNorm
from yt8m_segments.layers.moe import DEFAULT_INITIAL_PROBABILITY, prior_bias

# Defaults the seed papers do not give: ours (recorded in every ModelConfig).
DEFAULT_TEMPERATURE = 2.0
DEFAULT_DISTILL_WEIGHT = 1.0
DEFAULT_TEACHER_GRADIENTS = False


@keras.saving.register_keras_serializable(package="yt8m_segments")
class MixtureGate(keras.layers.Layer):
    """a = softmax(FC(BN(mean of real frames))): [B, T, D] + mask -> [B, N]."""

    def __init__(self, num_experts, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts
        self.supports_masking = True
        self.norm = BatchNorm(name="bn")
        self.dense = keras.layers.Dense(num_experts, activation="softmax",
                                        name="dense")

    def build(self, input_shape):
        shape = (input_shape[0], input_shape[-1])
        self.norm.build(shape)
        self.dense.build(shape)

    def frame_features(self, frames, mask=None, training=None):
        """Nothing is per frame: the frames themselves."""
        return frames

    def pool_frames(self, features, mask=None, training=None):
        """Mean of real frames [N, T, D] -> BN -> FC -> softmax: [N, N_experts]."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        mean = masked_pooling.masked_mean(features, mask)
        return self.dense(self.norm(mean, training=training))

    def call(self, frames, mask=None, training=None):
        return self.pool_frames(self.frame_features(frames, mask), mask,
                                training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_experts)

    def compute_mask(self, frames, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts}


@keras.saving.register_keras_serializable(package="yt8m_segments")
class MixtureClassifier(keras.layers.Layer):
    """N logistic heads mixed by a gate.

    Call with the list [gate [B, N], h_0 [B, H_0], ..., h_{N-1}]; returns the
    tuple (probabilities sigmoid(z_e) [B, C], z_e [B, C], z_m [B, N, C]).
    """

    def __init__(self, num_classes, num_experts, l2_penalty=1e-8,
                 initial_probability=DEFAULT_INITIAL_PROBABILITY, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.num_experts = num_experts
        self.l2_penalty = l2_penalty
        self.initial_probability = initial_probability
        self.heads = [
            keras.layers.Dense(num_classes, name=f"logistic_{i}",
                               kernel_regularizer=keras.regularizers.L2(
                                   l2_penalty),
                               bias_initializer=prior_bias(initial_probability))
            for i in range(num_experts)]

    def build(self, input_shape):
        if len(input_shape) != self.num_experts + 1:
            raise ValueError(
                f"MixtureClassifier takes [gate, h_0..h_{self.num_experts - 1}]"
                f", got {len(input_shape)} inputs")
        for head, shape in zip(self.heads, input_shape[1:]):
            head.build(shape)

    def call(self, inputs):
        gate, features = inputs[0], inputs[1:]
        expert_logits = ops.stack(
            [head(h) for head, h in zip(self.heads, features)], axis=1)
        logits = ops.einsum("bn,bnc->bc", gate, expert_logits)
        return ops.sigmoid(logits), logits, expert_logits

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return ((batch, self.num_classes), (batch, self.num_classes),
                (batch, self.num_experts, self.num_classes))

    def class_subset_weights(self, positions):
        """Every head restricted to the classes at `positions` (weight order)."""
        positions = np.asarray(positions)
        weights = []
        for head in self.heads:
            kernel, bias = head.get_weights()
            weights += [kernel[:, positions], bias[positions]]
        return weights

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_experts": self.num_experts,
                "l2_penalty": self.l2_penalty,
                "initial_probability": self.initial_probability}


def is_mixture(model):
    """Whether `model` (built by build_model) is a mixture."""
    try:
        return isinstance(model.get_layer("classifier"), MixtureClassifier)
    except ValueError:
        return False


def training_model(model):
    """The mixture's outputs for training, as a Model sharing `model`'s weights.

    Returns a keras.Model with the same inputs {"frames", "mask"} and outputs
    {"probabilities": [B, C], "logits": z_e [B, C], "expert_logits": [B, N, C]}.
    Works on a freshly built model and on one reloaded from .keras.
    """
    if not is_mixture(model):
        raise ValueError(f"{model.name} is not a mixture model")
    probabilities, logits, expert_logits = model.get_layer("classifier").output
    return keras.Model(model.input, {"probabilities": probabilities,
                                     "logits": logits,
                                     "expert_logits": expert_logits},
                       name=f"{model.name}_training")


def _binary_crossentropy_from_logits(labels, logits, weights=None):
    """sum_c w_c CE(y_c, sigmoid z_c), averaged over the batch: [B, C] -> scalar.

    The reduction of `losses.weighted_binary_crossentropy` (starter code's
    CrossEntropyLoss), computed stably from logits.
    """
    labels = ops.cast(labels, logits.dtype)
    ce = (ops.maximum(logits, 0.0) - logits * labels
          + ops.log1p(ops.exp(-ops.abs(logits))))
    if weights is not None:
        ce = ce * ops.cast(weights, ce.dtype)
    return ops.mean(ops.sum(ce, axis=-1))


def distillation_loss(logits, expert_logits, temperature=DEFAULT_TEMPERATURE,
                      teacher_gradients=DEFAULT_TEACHER_GRADIENTS):
    """mean_batch sum_m KL(softmax(z_e / T) || softmax(z_m / T)), class-axis softmax.

    `logits` z_e [B, C], `expert_logits` z_m [B, N, C]. With
    `teacher_gradients=False` z_e is a constant here (stop_gradient).
    """
    teacher = logits if teacher_gradients else ops.stop_gradient(logits)
    log_teacher = ops.log_softmax(teacher / temperature, axis=-1)[:, None, :]
    log_student = ops.log_softmax(expert_logits / temperature, axis=-1)
    kl = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
    return ops.mean(ops.sum(kl, axis=-1))


def mixture_loss_terms(labels, outputs, weights=None,
                       temperature=DEFAULT_TEMPERATURE,
                       teacher_gradients=DEFAULT_TEACHER_GRADIENTS):
    """The three loss terms, unweighted, as a dict of scalars.

    `outputs`: the dict `training_model(model)` returns. `labels`, `weights`
    [B, C] as for `losses.weighted_binary_crossentropy` (weights apply to the
    two BCE terms, not to distillation). Keys: "mixture" BCE(sigmoid z_e),
    "experts" sum_m BCE(sigmoid z_m), "distillation" the KL term.
    """
    logits, expert_logits = outputs["logits"], outputs["expert_logits"]
    experts = sum(
        _binary_crossentropy_from_logits(labels, expert_logits[:, m], weights)
        for m in range(expert_logits.shape[1]))
    return {
        "mixture": _binary_crossentropy_from_logits(labels, logits, weights),
        "experts": experts,
        "distillation": distillation_loss(logits, expert_logits, temperature,
                                          teacher_gradients),
    }


def mixture_loss(labels, outputs, weights=None,
                 temperature=DEFAULT_TEMPERATURE,
                 distill_weight=DEFAULT_DISTILL_WEIGHT,
                 teacher_gradients=DEFAULT_TEACHER_GRADIENTS):
    """mixture + experts + distill_weight * distillation (see the module doc)."""
    terms = mixture_loss_terms(labels, outputs, weights, temperature,
                               teacher_gradients)
    return (terms["mixture"] + terms["experts"]
            + distill_weight * terms["distillation"])


def loss_options(hparams):
    """`mixture_loss` keyword arguments from a ModelConfig's hparams."""
    return {"temperature": hparams.get("distill_temperature",
                                       DEFAULT_TEMPERATURE),
            "distill_weight": hparams.get("distill_weight",
                                          DEFAULT_DISTILL_WEIGHT),
            "teacher_gradients": hparams.get("distill_teacher_gradients",
                                             DEFAULT_TEACHER_GRADIENTS)}
