"""Models built by name, saved runs, and the fine-tuning initialisation."""

import numpy as np
import pytest

from yt8m_segments.training import run_artifacts
from yt8m_segments.training import task
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models.registry import ModelConfig, build_model

SMALL = {"dbof_cluster_size": 8, "dbof_hidden_size": 6, "moe_num_mixtures": 2}


def feed(batch=3, time=5, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"frames": rng.normal(size=(batch, time, dim)).astype("float32"),
            "mask": np.arange(time)[None, :] < np.array([5, 3, 1])[:, None]}


@pytest.mark.parametrize("model,classifier", [("DBoF", "MoE"),
                                              ("DbofModel", "LogisticModel")])
def test_build_by_name_including_starter_names(model, classifier):
    built = build_model(ModelConfig(model, classifier, 7, 12, SMALL))
    assert built(feed()).shape == (3, 7)


def test_mean_frame_path_gives_the_classifier_a_linear_reader_of_the_mean_frame():
    """DBoF's default: with the aggregator's rows of a logistic classifier
    zeroed, the model is exactly logistic regression on the mean of the real
    (L2-normalised) frames; padding does not change it."""
    built = build_model(ModelConfig("DBoF", "Logistic", 7, 12,
                                    {**SMALL, "dropout": 0.0}))
    assert built.get_layer("classifier").input.shape[-1] == 6 + 12
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(6 + 12, 7)).astype("float32")
    weights[:6] = 0.0  # the DBoF's hidden units
    bias = rng.normal(size=7).astype("float32")
    classifier = built.get_layer("classifier")
    classifier.set_weights([weights, bias])
    inputs = feed()
    frames = inputs["frames"] / np.linalg.norm(inputs["frames"], axis=-1,
                                               keepdims=True)
    mask = inputs["mask"][..., None]
    mean = (frames * mask).sum(1) / mask.sum(1)
    expected = 1.0 / (1.0 + np.exp(-(mean @ weights[6:] + bias)))
    np.testing.assert_allclose(built(inputs), expected, rtol=1e-5, atol=1e-6)
    padded = {"frames": np.concatenate(
        [inputs["frames"], rng.normal(size=(3, 4, 12)).astype("float32")], 1),
        "mask": np.concatenate([inputs["mask"], np.zeros((3, 4), bool)], 1)}
    np.testing.assert_allclose(built(padded), expected, rtol=1e-5, atol=1e-6)
    plain = build_model(ModelConfig("DBoF", "Logistic", 7, 12,
                                    {**SMALL, "mean_frame_path": False}))
    assert plain.get_layer("classifier").input.shape[-1] == 6


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown model 'NoSuch'.*DBoF"):
        build_model(ModelConfig("NoSuch", "MoE", 7, 12))
    with pytest.raises(ValueError, match="unknown classifier 'Svm'.*MoE"):
        build_model(ModelConfig("DBoF", "Svm", 7, 12))


@pytest.mark.parametrize("classifier", ["MoE", "Logistic"])
def test_finetune_init_keeps_segment_rows_and_other_weights(tmp_path,
                                                            classifier):
    config = ModelConfig("DBoF", classifier, 10, 12, SMALL)
    model = build_model(config)
    run_artifacts.save_run(str(tmp_path), model, config, list(range(10)),
                           FeatureSpec(("rgb", "audio"), (8, 4)),
                           extra={"stage": "pretrain"})
    pretrained = run_artifacts.Run(str(tmp_path))
    np.testing.assert_allclose(pretrained.model(feed()), model(feed()),
                               rtol=1e-6)

    finetuned, finetuned_config = task.finetune_model(pretrained, [8, 2, 5])
    assert finetuned_config.num_classes == 3
    np.testing.assert_allclose(finetuned(feed()), model(feed()).numpy()[:, [8, 2, 5]],
                               rtol=1e-5)
    for layer in finetuned.layers:
        if layer.name in ("classifier", "frames", "mask"):
            continue
        for a, b in zip(layer.get_weights(),
                        model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_run_without_segment_classes_is_a_clear_error(tmp_path):
    config = ModelConfig("DBoF", "MoE", 10, 12, SMALL)
    run_artifacts.save_run(str(tmp_path), build_model(config), config,
                           list(range(10)), FeatureSpec(("rgb",), (12,)),
                           extra={"stage": "pretrain"})
    run = run_artifacts.Run(str(tmp_path))
    with pytest.raises(ValueError, match="segment_labels_file"):
        run.segment_class_ids()
    with pytest.raises(ValueError, match=r"no output for classes \[11\]"):
        run.columns_for([3, 11])


def test_missing_run_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="finished training run"):
        run_artifacts.Run(str(tmp_path / "nowhere"))
