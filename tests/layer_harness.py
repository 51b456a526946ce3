"""One shared test for every layer, in the spirit of keras-hub's run_layer_test.

Checks the output shape, the config round trip, the `.keras` reload (same
outputs) and the weight count, so each layer's test only says what it builds.
"""

import os

import keras
import numpy as np


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape,
                   tmp_dir, mask=None, expected_num_trainable_weights=None):
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

    inputs = keras.Input(input_data.shape[1:], name="x")
    model_inputs = [inputs]
    if mask is not None:
        mask_input = keras.Input(mask.shape[1:], dtype="bool", name="m")
        model_inputs.append(mask_input)
        outputs = layer_cls(**init_kwargs)(inputs, mask=mask_input)
    else:
        outputs = layer_cls(**init_kwargs)(inputs)
    model = keras.Model(model_inputs, outputs)
    feed = [input_data] if mask is None else [input_data, mask]
    before = model.predict(feed, verbose=0)
    path = os.path.join(str(tmp_dir), "layer.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(feed, verbose=0), before,
                               rtol=1e-6, atol=1e-6)
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    return layer, output


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
