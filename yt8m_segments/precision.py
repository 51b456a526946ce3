"""Mixed precision for the train and predict steps.

A Keras dtype policy is fixed when a layer is built, so the policy is a
scope around model building (`policy_scope`), and a model loaded from a run
(saved in float32, whatever it trained in: `as_float32`) is rebuilt under
the policy a command asks for (`rebuild`). Under a mixed policy the weights
stay float32 and matrix products run in bfloat16 (CPUs with AMX or
AVX512-BF16, TPUs, GPUs from Ampere) or float16 (GPUs; training scales the
loss, `keras.optimizers.LossScaleOptimizer`). Batch-norm statistics, the
classifiers' activations and the losses are computed in float32, so the
probabilities are float32: bfloat16's 8-bit mantissa would tie segments in a
ranking.
"""

import contextlib

import keras

FLOAT32 = "float32"
POLICIES = (FLOAT32, "mixed_bfloat16", "mixed_float16")


def check_policy(name):
    if name not in POLICIES:
        raise ValueError(f"unknown precision '{name}': one of "
                         f"{', '.join(POLICIES)}")
    return name


@contextlib.contextmanager
def policy_scope(name):
    """Layers built inside take the dtype policy `name`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(check_policy(name))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def policy_of(model):
    """The dtype policy a model's layers were built with."""
    names = {layer.dtype_policy.name for layer in model.layers
             if layer.weights}
    return names.pop() if len(names) == 1 else FLOAT32


def rebuild(model, model_config, name):
    """`model` (built by registry.build_model from `model_config`) under the
    policy `name`, with the same weights; `model` itself if it has it."""
    from yt8m_segments.models import registry

    if policy_of(model) == check_policy(name):
        return model
    with policy_scope(name):
        twin = registry.build_model(model_config)
    twin.set_weights(model.get_weights())
    return twin


def as_float32(model, model_config):
    """The model to save: float32 layers, so a run loads the same whatever
    precision trained it, and each command picks its own."""
    return rebuild(model, model_config, FLOAT32)
