"""Stochastic Weight Averaging: the average against numpy, the CLI end to end."""

import json
import os

import numpy as np
import pytest

from command_runner import run_command
from yt8m_segments.training import run_artifacts
from yt8m_segments.training import swa
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models.registry import ModelConfig, build_model

SMALL = {"dbof_cluster_size": 8, "dbof_hidden_size": 6, "moe_num_mixtures": 2}


def test_average_weights_matches_numpy():
    rng = np.random.default_rng(0)
    lists = [[rng.normal(size=(3, 4)).astype("float32"),
              rng.normal(size=(5,)).astype("float16"),
              np.array(i, "int64")] for i in range(4)]
    got = swa.average_weights(lists)
    np.testing.assert_allclose(got[0], np.mean([w[0] for w in lists], axis=0),
                               rtol=1e-6)
    assert got[0].dtype == np.float32 and got[1].dtype == np.float16
    np.testing.assert_allclose(
        got[1], np.mean([w[1].astype(np.float64) for w in lists], axis=0)
        .astype(np.float16))
    assert got[2] == 3  # non-float weights: the last list's
    with pytest.raises(ValueError, match="no weights"):
        swa.average_weights([])
    with pytest.raises(ValueError, match="shapes"):
        swa.average_weights([[np.zeros(2)], [np.zeros(3)]])


def make_run(train_dir, steps):
    """A tiny saved run plus checkpoints whose weights differ by step."""
    config = ModelConfig("DBoF", "MoE", 4, 12, SMALL)
    model = build_model(config)
    run_artifacts.save_run(str(train_dir), model, config, [11, 3, 7, 5],
                           FeatureSpec(("rgb", "audio"), (8, 4)),
                           extra={"stage": "finetune", "context_frames": 2})
    os.makedirs(train_dir / "checkpoints")
    rng = np.random.default_rng(1)
    saved = {}
    for step in steps:
        weights = [w + rng.normal(size=w.shape).astype(w.dtype) ** 2
                   for w in model.get_weights()]  # squares keep variances > 0
        model.set_weights(weights)
        model.save_weights(str(train_dir / "checkpoints"
                               / f"ckpt-{step}.weights.h5"))
        saved[step] = weights
    # Not checkpoints: a temp file and another name.
    (train_dir / "checkpoints" / "ckpt-25.tmp-99.weights.h5").write_text("x")
    (train_dir / "checkpoints" / "notes.txt").write_text("x")
    return model, saved


def feed():
    rng = np.random.default_rng(2)
    return {"frames": rng.normal(size=(3, 5, 12)).astype("float32"),
            "mask": np.arange(5)[None, :] < np.array([5, 3, 1])[:, None]}


def test_cli_averages_the_interval_and_the_run_reloads(tmp_path):
    source = tmp_path / "run"
    model, saved = make_run(source, [10, 20, 30, 40])
    output = tmp_path / "swa_out"
    result = run_command("swa", f"--train_dir={source}", "--start_step=15",
                         "--end_step=40", f"--output_dir={output}")
    assert "averaged 3 checkpoints (steps 20..40)" in result.stdout

    run = run_artifacts.Run(str(output))
    expected = [np.mean([saved[s][i] for s in (20, 30, 40)], axis=0)
                for i in range(len(saved[20]))]
    for got, want in zip(run.model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    model.set_weights(expected)
    np.testing.assert_allclose(run.model(feed()), model(feed()), rtol=1e-5)

    original = json.loads((source / "run_config.json").read_text())
    config = json.loads((output / "run_config.json").read_text())
    assert config.pop("swa") == {
        "start_step": 15, "end_step": 40, "steps": [20, 30, 40],
        "source_train_dir": str(source), "batch_norm_stats": "average"}
    assert config == original
    assert run.class_ids == [11, 3, 7, 5]
    assert sorted(os.listdir(output)) == ["model.keras", "run_config.json"]


def test_keep_last_batch_norm_stats_default_dir_and_errors(tmp_path):
    source = tmp_path / "run"
    model, saved = make_run(source, [1, 2])
    output, steps = swa.swa_train_dir(str(source), 0, 5,
                                      batch_norm_stats="last")
    assert output == f"{source}_swa_0_5" and steps == [1, 2]
    weights = run_artifacts.Run(output).model.get_weights()
    names = [w.path for w in model.weights]
    assert any(n.endswith("moving_variance") for n in names)
    for i, name in enumerate(names):
        if name.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_allclose(weights[i], saved[2][i], rtol=1e-6)
        else:
            np.testing.assert_allclose(weights[i], (saved[1][i] + saved[2][i])
                                       / 2, rtol=1e-6)

    with pytest.raises(ValueError, match=r"no checkpoint .* 5 <= step <= 9; "
                                         r"available steps: \[1, 2\]"):
        swa.swa_train_dir(str(source), 5, 9)
    with pytest.raises(ValueError, match="end_step 1 < start_step 2"):
        swa.swa_train_dir(str(source), 2, 1)
    with pytest.raises(ValueError, match="must differ"):
        swa.swa_train_dir(str(source), 1, 2, output_dir=str(source))
