"""FeatureSlice: harness, numpy slice, the mask passes through, saved name."""

import keras
import numpy as np

from layer_harness import run_layer_test
from layer_inputs import frames, lengths_mask
from yt8m_segments.layers.feature_slice import FeatureSlice


def test_feature_slice_harness_and_numpy(tmp_path):
    # No mask argument: call takes none (Keras carries the mask past it).
    x = frames()
    _, out = run_layer_test(FeatureSlice, {"start": 4, "stop": 10}, x,
                            (3, 7, 6), tmp_path,
                            expected_num_trainable_weights=0,
                            expected_num_non_trainable_weights=0)
    np.testing.assert_array_equal(out.numpy(), x[..., 4:10])


def test_feature_slice_keeps_the_frame_mask():
    """Slicing features moves no frame: the aggregator after it needs the
    same mask."""
    mask = lengths_mask([7, 3, 5], 7)
    out_mask = FeatureSlice(0, 4).compute_mask(frames(), mask)
    np.testing.assert_array_equal(np.asarray(out_mask), mask)


def test_feature_slice_keeps_its_registered_name():
    """Saved .keras files (written when it lived in models/registry.py) name it
    by this registered name."""
    assert (keras.saving.get_registered_name(FeatureSlice)
            == "yt8m_segments>FeatureSlice")
