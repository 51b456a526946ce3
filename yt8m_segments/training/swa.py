"""Stochastic Weight Averaging as a library: checkpoints of a run averaged
into a new train_dir, with plain arguments, for the swa command
(yt8m_segments/swa.py, whose docstring describes the output and the recipe)
and tests."""

import os
import re

from absl import logging
import numpy as np
import tensorflow as tf

from yt8m_segments.training import run_artifacts
from yt8m_segments.training.trainer import CHECKPOINT_DIR

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d+)\.weights\.h5$")
BATCH_NORM_STATS = ("average", "last")


def average_weights(weight_lists):
    """Element-wise mean of several `model.get_weights()` lists (numpy).

    Floating weights are averaged in float64 and returned in their own dtype;
    any non-float weight (counters, seeds) is taken from the last list.
    """
    weight_lists = list(weight_lists)
    if not weight_lists:
        raise ValueError("no weights to average")
    averager = WeightAverager()
    for weights in weight_lists:
        averager.add(weights)
    return averager.average()


class WeightAverager:
    """Running mean of weight lists, holding one float64 sum at a time."""

    def __init__(self):
        self._sums = None
        self._last = None
        self.count = 0

    def add(self, weights):
        weights = [np.asarray(w) for w in weights]
        if self._sums is None:
            self._sums = [np.zeros(w.shape, np.float64) for w in weights]
        elif len(weights) != len(self._sums) or any(
                w.shape != s.shape for w, s in zip(weights, self._sums)):
            raise ValueError("weight lists differ in length or shapes")
        for total, w in zip(self._sums, weights):
            if np.issubdtype(w.dtype, np.floating):
                total += w
        self._last = weights
        self.count += 1

    def average(self):
        if not self.count:
            raise ValueError("no weights to average")
        return [(total / self.count).astype(last.dtype)
                if np.issubdtype(last.dtype, np.floating) else last.copy()
                for total, last in zip(self._sums, self._last)]


def list_checkpoints(train_dir):
    """{step: path} of train_dir/checkpoints/ckpt-<step>.weights.h5."""
    directory = os.path.join(train_dir, CHECKPOINT_DIR)
    if not tf.io.gfile.isdir(directory):
        return {}
    found = {}
    for name in tf.io.gfile.listdir(directory):
        match = CHECKPOINT_PATTERN.match(name.rstrip("/"))
        if match:
            found[int(match.group(1))] = os.path.join(directory, name)
    return dict(sorted(found.items()))


def checkpoints_in_range(train_dir, start_step, end_step):
    """[(step, path)] with start_step <= step <= end_step; error if none."""
    if end_step < start_step:
        raise ValueError(f"end_step {end_step} < start_step {start_step}")
    available = list_checkpoints(train_dir)
    chosen = [(s, p) for s, p in available.items()
              if start_step <= s <= end_step]
    if not chosen:
        raise ValueError(
            f"no checkpoint of {train_dir} with {start_step} <= step <= "
            f"{end_step}; available steps: {sorted(available) or 'none'}")
    return chosen


def _batch_norm_indices(model):
    """Positions in model.weights of BatchNorm moving mean / variance."""
    return [i for i, w in enumerate(model.weights)
            if w.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")]


def swa_train_dir(train_dir, start_step, end_step, output_dir=None,
                  batch_norm_stats="average"):
    """Average the checkpoints of [start_step, end_step] into a new train_dir.

    Returns (output_dir, steps). See yt8m_segments/swa.py's docstring.
    """
    if batch_norm_stats not in BATCH_NORM_STATS:
        raise ValueError(f"batch_norm_stats must be one of {BATCH_NORM_STATS}")
    output_dir = output_dir or (
        f"{train_dir.rstrip('/')}_swa_{start_step}_{end_step}")
    if os.path.normpath(output_dir) == os.path.normpath(train_dir):
        raise ValueError("--output_dir must differ from --train_dir")
    chosen = checkpoints_in_range(train_dir, start_step, end_step)
    run = run_artifacts.Run(train_dir)
    model = run.model
    averager = WeightAverager()
    for step, path in chosen:
        logging.info("SWA: adding step %d (%s)", step, path)
        model.load_weights(path)
        averager.add(model.get_weights())
    averaged = averager.average()
    if batch_norm_stats == "last":
        last = model.get_weights()  # the last checkpoint loaded
        for i in _batch_norm_indices(model):
            averaged[i] = last[i]
    model.set_weights(averaged)
    steps = [step for step, _ in chosen]
    extra = {key: value for key, value in run.config.items()
             if key not in ("model_config", "class_ids", "feature_names",
                            "feature_sizes")}
    extra["swa"] = {"start_step": int(start_step), "end_step": int(end_step),
                    "steps": steps, "source_train_dir": train_dir,
                    "batch_norm_stats": batch_norm_stats}
    run_artifacts.save_run(output_dir, model, run.model_config, run.class_ids,
                           run.feature_spec, extra=extra)
    return output_dir, steps
