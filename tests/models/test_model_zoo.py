"""Every model built by name, the mixture's loss terms, flagfiles, --list counts."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from yt8m_segments import cli
from yt8m_segments import train
from yt8m_segments.training import run_artifacts
from yt8m_segments.training import task
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models import __main__ as models_main
from yt8m_segments.models import mixture
from yt8m_segments.models import registry
from yt8m_segments.models.registry import ModelConfig, build_model

FLAGS_DIR = cli.RECIPES_DIR
SIZES = [8, 4]
TINY = {
    "feature_sizes": SIZES, "dbof_cluster_size": 8, "dbof_hidden_size": 6,
    "gate_bottleneck": 4, "netvlad_cluster_size": 4, "nonlocal_size": 3,
    "nextvlad_cluster_size": 4, "nextvlad_groups": 2, "netfv_cluster_size": 4,
    "rnn_units": 5, "rnn_layers": 2, "resnet_branch_size": 6,
    "resnet_hidden_size": 6, "resnet_trunk_blocks": 1, "mixture_size": 2,
    "gating_reduction": 2,
}
ALL_MODELS = registry.registered_models() + ["Mixture"]


def tiny_config(name, num_classes=7):
    hparams = dict(TINY)
    if name == "Mixture":
        hparams["mixture_models"] = ["NeXtVLAD", "SoftDBoF"]
    if registry.resolve_hparams(name, hparams)["hidden_size"]:
        hparams["hidden_size"] = 6
    classifier = ("Logistic" if registry.is_mixture_name(name)
                  else registry.MODELS[name].classifier)
    return ModelConfig(name, classifier, num_classes, sum(SIZES), hparams)


def feed(time=5, batch=3, dim=sum(SIZES), seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([time, max(1, time - 2), 1][:batch])
    return {"frames": rng.normal(size=(batch, time, dim)).astype("float32"),
            "mask": np.arange(time)[None, :] < lengths[:, None]}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_runs_and_round_trips(name, tmp_path):
    model = build_model(tiny_config(name))
    segment, context = feed(5), feed(15, seed=1)
    for inputs in (segment, context):
        probabilities = model(inputs, training=False).numpy()
        assert probabilities.shape == (3, 7)
        assert np.all((probabilities >= 0) & (probabilities <= 1))
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for inputs in (segment, context):
        np.testing.assert_array_equal(reloaded(inputs, training=False),
                                      model(inputs, training=False))


def test_mixture_training_outputs_share_weights_and_mix_logits():
    model = build_model(tiny_config("MixNeXtVLAD"))
    outputs = mixture.training_model(model)(feed(), training=False)
    np.testing.assert_allclose(outputs["probabilities"],
                               model(feed(), training=False), rtol=1e-6)
    gate = model.get_layer("mixture_gate")
    gate_model = keras.Model(model.input, gate.output)
    a = gate_model(feed(), training=False).numpy()
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        outputs["logits"],
        np.einsum("bn,bnc->bc", a, outputs["expert_logits"].numpy()),
        rtol=1e-5, atol=1e-6)
    assert outputs["expert_logits"].shape == (3, 2, 7)
    with pytest.raises(ValueError, match="not a mixture"):
        mixture.training_model(build_model(tiny_config("NeXtVLAD")))


def test_finetune_init_of_a_mixture_keeps_every_sub_model_rows(tmp_path):
    config = tiny_config("MixSoftDBoF", num_classes=10)
    model = build_model(config)
    run_artifacts.save_run(str(tmp_path), model, config, list(range(10)),
                           FeatureSpec(("rgb", "audio"), tuple(SIZES)),
                           extra={"stage": "pretrain"})
    pretrained = run_artifacts.Run(str(tmp_path))
    finetuned, finetuned_config = task.finetune_model(pretrained, [8, 2, 5])
    assert finetuned_config.num_classes == 3
    before = mixture.training_model(model)(feed(), training=False)
    after = mixture.training_model(finetuned)(feed(), training=False)
    np.testing.assert_allclose(after["expert_logits"],
                               before["expert_logits"].numpy()[..., [8, 2, 5]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(finetuned(feed(), training=False),
                               model(feed(), training=False).numpy()[:, [8, 2, 5]],
                               rtol=1e-5, atol=1e-6)


def _numpy_loss_terms(labels, weights, z_e, z_m, temperature):
    def bce(z):
        p = 1 / (1 + np.exp(-z))
        ce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
        return np.mean(np.sum(weights * ce, axis=-1))

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    p_e = softmax(z_e / temperature)
    kl = 0.0
    for m in range(z_m.shape[1]):
        p_m = softmax(z_m[:, m] / temperature)
        kl = kl + np.sum(p_e * (np.log(p_e) - np.log(p_m)), axis=-1)
    return {"mixture": bce(z_e),
            "experts": sum(bce(z_m[:, m]) for m in range(z_m.shape[1])),
            "distillation": np.mean(kl)}


def test_mixture_loss_terms_match_numpy():
    rng = np.random.default_rng(3)
    labels = (rng.random((4, 6)) < 0.3).astype("float32")
    weights = rng.random((4, 6)).astype("float32")
    outputs = {"logits": rng.normal(size=(4, 6)).astype("float32") * 2,
               "expert_logits": rng.normal(size=(4, 3, 6)).astype("float32") * 2}
    expected = _numpy_loss_terms(labels, weights, outputs["logits"],
                                 outputs["expert_logits"], 2.5)
    terms = mixture.mixture_loss_terms(labels, outputs, weights,
                                       temperature=2.5)
    for key, value in expected.items():
        np.testing.assert_allclose(float(terms[key]), value, rtol=1e-5)
    total = mixture.mixture_loss(labels, outputs, weights, temperature=2.5,
                                 distill_weight=0.7)
    np.testing.assert_allclose(
        float(total), expected["mixture"] + expected["experts"]
        + 0.7 * expected["distillation"], rtol=1e-5)


@pytest.mark.parametrize("teacher_gradients", [False, True])
def test_teacher_gradients_switch_gates_the_mixture_gate(teacher_gradients):
    model = build_model(tiny_config("MixDBoF"))
    training = mixture.training_model(model)
    gate_weights = model.get_layer("mixture_gate").trainable_weights
    inputs = feed()
    with tf.GradientTape() as tape:
        outputs = training(inputs, training=True)
        kd = mixture.distillation_loss(outputs["logits"],
                                       outputs["expert_logits"],
                                       teacher_gradients=teacher_gradients)
    gradients = tape.gradient(kd, gate_weights)
    norm = sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients
               if g is not None)
    if teacher_gradients:
        assert norm > 0
    else:
        assert norm == 0


def test_nextvlad_counts_79_2_million_at_paper_sizes():
    assert registry.count_parameters("NeXtVLAD") == 79_239_074
    rows = [("NeXtVLAD", "Logistic", 79_239_074, "paper")]
    assert "79,239,074" in models_main.format_table(rows)


def test_hparams_parse_merge_and_reject_typos():
    assert registry.parse_hparams(
        ["a=1,b=x,c=[1,2],d=true", '{"a": 2.5}']) == {
            "a": 2.5, "b": "x", "c": [1, 2], "d": True}
    with pytest.raises(ValueError, match="unknown model hyperparameters"):
        registry.resolve_hparams("NeXtVLAD", {"nextvlad_clusters": 3})
    with pytest.raises(ValueError, match="Logistic"):
        build_model(ModelConfig("MixNeXtVLAD", "MoE", 7, 12, TINY))
    resolved = registry.resolve_hparams("NeXtVLAD", {}, 1152)
    assert resolved["feature_sizes"] == [1024, 128]
    assert resolved["hidden_size"] == 2048


FLAGFILES = sorted(glob.glob(os.path.join(FLAGS_DIR, "*.flags")))


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_every_flagfile_parses_and_builds(path):
    argv = ["train", f"--flagfile={path}"]
    if os.path.basename(path).startswith("demo_"):
        argv.insert(1, f"--flagfile={os.path.join(FLAGS_DIR, 'demo.flags')}")
    try:
        flags.FLAGS(argv)
        spec = FeatureSpec()
        config = task.model_config(train.config_from_flags(), spec)
    finally:
        flags.FLAGS.unparse_flags()
    if os.path.basename(path).startswith("tiny_"):
        model = build_model(config)
        inputs = feed(dim=spec.total_size, batch=2)
        assert model(inputs, training=False).shape == (2, 3862)
    else:
        assert registry.count_config_parameters(config) > 1_000_000
    if os.path.basename(path) == "p4_nextvlad.flags":
        assert registry.count_config_parameters(config) == 79_239_074
    if os.path.basename(path) == "demo.flags":
        assert config.hparams["dbof_cluster_size"] == 256
        assert config.hparams["dbof_pooling"] == "average"
