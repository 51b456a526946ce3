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
fine-tuning's "slice the layer named classifier" works unchanged. The gate
(`MixtureGate`) and the heads are layers in yt8m_segments/layers/; this module
holds what is mixture-specific around them: the training view and the losses.
"""

import keras
from keras import ops

from yt8m_segments.layers.mixture_classifier import MixtureClassifier

# Defaults the seed papers do not give: ours (recorded in every ModelConfig).
DEFAULT_TEMPERATURE = 2.0
DEFAULT_DISTILL_WEIGHT = 1.0
DEFAULT_TEACHER_GRADIENTS = False


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
