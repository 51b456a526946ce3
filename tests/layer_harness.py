"""One shared test for every layer, in the spirit of keras-hub's run_layer_test.

Checks the output shape (eager and symbolic), the config round trip, the
`.keras` reload (same outputs and weights), the trainable and non-trainable
weight counts, one fit step (the loss is finite and every trainable weight
moves) and a mixed-precision pass (bfloat16 compute, float32 variables,
outputs near float32's), so each layer's test only says what it builds.
"""

import os

import keras
import numpy as np

from yt8m_segments import precision

# bfloat16 keeps 8 mantissa bits: outputs agree with float32 to ~1%.
MIXED_POLICY = "mixed_bfloat16"
MIXED_TOLERANCE = 5e-2


def _functional(layer, input_data, mask):
    """A model around `layer`: inputs x (and mask m) -> layer output."""
    inputs = [keras.Input(input_data.shape[1:], name="x")]
    if mask is not None:
        inputs.append(keras.Input(mask.shape[1:], dtype="bool", name="m"))
        outputs = layer(inputs[0], mask=inputs[1])
    else:
        outputs = layer(inputs[0])
    return keras.Model(inputs, outputs)


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape,
                   tmp_dir, mask=None, expected_num_trainable_weights=None,
                   expected_num_non_trainable_weights=None,
                   run_training_check=True, run_mixed_precision_check=True,
                   mixed_output_dtype="bfloat16"):
    """`mixed_output_dtype`: what the layer returns under the mixed policy
    (the classifiers: float32 probabilities, precision.py)."""
    layer = layer_cls(**init_kwargs)
    call_kwargs = {} if mask is None else {"mask": mask}
    output = layer(input_data, **call_kwargs)
    assert tuple(output.shape) == tuple(expected_output_shape)

    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert config[key] == value, key
    rebuilt = layer_cls.from_config(config)
    assert rebuilt.get_config() == config

    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert (len(layer.non_trainable_weights)
                == expected_num_non_trainable_weights)

    model = _functional(layer_cls(**init_kwargs), input_data, mask)
    # Symbolic call: the batch dimension stays unknown, the rest is known.
    assert tuple(model.output.shape) == (None, *expected_output_shape[1:])
    feed = [input_data] if mask is None else [input_data, mask]
    before = model.predict(feed, verbose=0)
    path = os.path.join(str(tmp_dir), "layer.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(feed, verbose=0), before,
                               rtol=1e-6, atol=1e-6)
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)

    if run_training_check:
        _check_one_fit_step(model, feed, before)
    if run_mixed_precision_check:
        _check_mixed_precision(layer_cls, init_kwargs, reloaded, input_data,
                               mask, feed, before, mixed_output_dtype)
    return layer, output


def _check_one_fit_step(model, feed, outputs):
    """One SGD step towards a target away from the outputs moves every
    trainable weight and gives a finite loss."""
    start = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    target = outputs + 1.0
    history = model.fit(feed, target, batch_size=len(target), epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for weight, value in zip(model.trainable_weights, start):
        assert not np.array_equal(weight.numpy(), value), weight.path


def _check_mixed_precision(layer_cls, init_kwargs, trained, input_data, mask,
                           feed, expected, output_dtype):
    """The layer built under the global mixed policy (as a mixed-precision
    run builds its model), with float32's weights: variables stay float32,
    outputs are `output_dtype` and near float32's."""
    with precision.policy_scope(MIXED_POLICY):
        layer = layer_cls(**init_kwargs)
        model = _functional(layer, input_data, mask)
    model.set_weights(trained.get_weights())
    assert all(w.dtype == "float32" for w in layer.weights)
    output = model(feed, training=False)
    assert keras.backend.standardize_dtype(output.dtype) == output_dtype
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(np.asarray(output, np.float32), expected,
                               atol=MIXED_TOLERANCE * scale)


def assert_padding_changes_nothing(layer, frames, mask, fill=100.0):
    """Padded frames set to `fill` change no output, in inference and in
    training (so they stay out of batch statistics too)."""
    noisy = frames.copy()
    noisy[~mask] = fill
    for training in (False, True):
        np.testing.assert_allclose(
            layer(frames, mask=mask, training=training).numpy(),
            layer(noisy, mask=mask, training=training).numpy(),
            rtol=1e-5, atol=1e-5)
