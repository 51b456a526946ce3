"""ResNetLike: harness, variant widths, the concat split, bad inputs."""

import numpy as np
import pytest

from layer_harness import run_layer_test
from layer_inputs import RESNET_SIZES, RNG
from yt8m_segments.layers.resnet_like import ResNetLike


@pytest.mark.parametrize("variant,input_size,num_weights,num_statistics", [
    # Stages of 3 + blocks of 6 weights: 2 branches of (3 + 6), trunk 3 + 12;
    # each of the 11 batch norms keeps 3 statistics.
    ("plain", 16, 33, 33),
    ("imbalance", 16, 33, 33),
    ("concat", 32, 33, 33),
])
def test_resnet_like_harness(variant, input_size, num_weights, num_statistics,
                             tmp_path):
    x = RNG.normal(size=(4, input_size)).astype("float32")
    run_layer_test(ResNetLike,
                   {"feature_sizes": RESNET_SIZES, "variant": variant,
                    "branch_size": 8, "hidden_size": 6, "branch_blocks": 1,
                    "trunk_blocks": 2, "dropout": 0.1},
                   x, (4, 6), tmp_path,
                   expected_num_trainable_weights=num_weights,
                   expected_num_non_trainable_weights=num_statistics)


def test_resnet_like_variant_widths():
    def widths(variant):
        layer = ResNetLike(RESNET_SIZES, variant=variant, branch_size=8)
        layer.build((None, layer.input_size()))
        return [tuple(branch.stem.dense.kernel.shape)
                for branch in layer.branches]
    assert widths("plain") == [(12, 8), (4, 8)]
    assert widths("imbalance") == [(12, 8), (4, 3)]
    assert widths("concat") == [(24, 8), (8, 8)]
    # Defaults: rgb 1024 + audio 128; imbalance keeps audio at 128 channels.
    assert ResNetLike(variant="imbalance").branch_widths() == [1024, 128]


def test_resnet_like_concat_reads_means_then_maxes_per_modality():
    """Each max block reaches only its own modality's branch."""
    layer = ResNetLike(RESNET_SIZES, variant="concat", branch_size=8,
                       hidden_size=6)
    x = RNG.normal(size=(2, 32)).astype("float32")
    layer(x)
    branch_inputs = [part.numpy() for part in layer.split(x)]
    np.testing.assert_array_equal(
        branch_inputs[0], np.concatenate([x[:, 0:12], x[:, 16:28]], axis=1))
    np.testing.assert_array_equal(
        branch_inputs[1], np.concatenate([x[:, 12:16], x[:, 28:32]], axis=1))


def test_resnet_like_rejects_a_mismatched_input():
    with pytest.raises(ValueError, match="expects 32 features, got 16"):
        ResNetLike(RESNET_SIZES, variant="concat")(
            np.zeros((2, 16), "float32"))

