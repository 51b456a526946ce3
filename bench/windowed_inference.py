r"""Inference forward pass: flat context windows vs per-frame work once per video.

  python bench/windowed_inference.py [--seconds=4] [--videos_per_batch=4]

For each model and context size n (windows of 5 + 2n frames, stride 5) it
times, in this process and on the same random videos (120-300 frames of
1024 + 128 features, like the test set), the model's forward pass
(training=False, traced once):
  flat      the model on flat windows [N, 5 + 2n, D] (the flat test view)
  windowed  models/windowed.py on the per-video batch: per-frame work once
            per video, per-frame features gathered into windows and pooled
and prints segments/s of each and their ratio. Input parsing is not timed
(the per-video view also dequantizes each frame once instead of once per
window it falls in, which only adds to the windowed side's gain).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from yt8m_segments.data import views  # noqa: E402
from yt8m_segments.models import windowed  # noqa: E402
from yt8m_segments.models.registry import ModelConfig, build_model  # noqa: E402

flags.DEFINE_float("seconds", 4.0, "Least time to measure each row for.")
flags.DEFINE_integer("videos_per_batch", 4, "Videos per batch (flat batches "
                     "hold the same windows).")
flags.DEFINE_integer("num_batches", 4, "Distinct batches cycled through.")
flags.DEFINE_list("context_frames", ["0", "5", "15"], "Context sizes n.")
FLAGS = flags.FLAGS

FEATURE_SIZE = 1152
NUM_CLASSES = 1000
MODELS = [
    ("DBoF (demo: 256 clusters, hidden 128, MoE 2)",
     ModelConfig("DBoF", "MoE", NUM_CLASSES, FEATURE_SIZE,
                 {"dbof_cluster_size": 256, "dbof_hidden_size": 128,
                  "dbof_pooling": "average", "moe_num_mixtures": 2})),
    ("NeXtVLAD (K=32, G=8, lambda=2, hidden 256, SE, logistic)",
     ModelConfig("NeXtVLAD", "Logistic", NUM_CLASSES, FEATURE_SIZE,
                 {"nextvlad_cluster_size": 32, "nextvlad_groups": 8,
                  "nextvlad_expansion": 2, "hidden_size": 256})),
]


def make_batches(context_frames, rng):
    """[(per-video batch dict, flat batch dict, num windows)]."""
    batches = []
    for _ in range(FLAGS.num_batches):
        lengths = rng.integers(120, 301, FLAGS.videos_per_batch)
        time_steps = lengths.max()
        mask = np.arange(time_steps)[None] < lengths[:, None]
        frames = (rng.uniform(-2, 2, (len(lengths), time_steps, FEATURE_SIZE))
                  * mask[..., None]).astype(np.float32)
        num_windows = (lengths + 4) // 5
        rows = np.repeat(np.arange(len(lengths)), num_windows)
        starts = np.concatenate([np.arange(n) * 5 for n in num_windows])
        index, window_mask = (t.numpy() for t in views.window_indices(
            tf.constant(lengths, tf.int32), tf.constant(rows, tf.int32),
            tf.constant(starts, tf.int32), context_frames))
        slot = np.concatenate([np.arange(n) for n in num_windows])
        shape = (len(lengths), num_windows.max())
        per_video = {"frames": frames, "mask": mask,
                     "window_index": np.zeros(shape + index.shape[1:], np.int32),
                     "window_mask": np.zeros(shape + index.shape[1:], bool),
                     "segment_mask": np.zeros(shape, bool)}
        per_video["window_index"][rows, slot] = index
        per_video["window_mask"][rows, slot] = window_mask
        per_video["segment_mask"][rows, slot] = True
        flat = {"frames": frames[rows[:, None], index] * window_mask[..., None],
                "mask": window_mask}
        batches.append(({k: tf.constant(v) for k, v in per_video.items()},
                        {k: tf.constant(v) for k, v in flat.items()},
                        len(rows)))
    return batches


def measure(step, batches, seconds):
    """Segments/s of `step(batch)` cycling through `batches`."""
    for batch, count in batches:      # trace + warm up
        step(batch).numpy()
    segments, start = 0, time.perf_counter()
    while True:
        for batch, count in batches:
            step(batch).numpy()
            segments += count
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return segments / elapsed


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    rows = []
    for title, config in MODELS:
        keras.utils.set_random_seed(0)
        model = build_model(config)
        runner = windowed.windowed_model(model)

        @tf.function(reduce_retracing=True)
        def flat_step(batch, model=model):
            return model(batch, training=False)

        @tf.function(reduce_retracing=True)
        def windowed_step(batch, runner=runner):
            return runner.segments(batch["frames"], batch["mask"],
                                   batch["window_index"], batch["window_mask"],
                                   batch["segment_mask"])

        for context in map(int, FLAGS.context_frames):
            batches = make_batches(context, rng)
            first_video, first_flat, _ = batches[0]
            difference = np.abs(windowed_step(first_video).numpy()
                                - flat_step(first_flat).numpy()).max()
            flat_rate = measure(flat_step, [(f, n) for _, f, n in batches],
                                FLAGS.seconds)
            windowed_rate = measure(windowed_step,
                                    [(v, n) for v, _, n in batches],
                                    FLAGS.seconds)
            rows.append((title, context, 5 + 2 * context, flat_rate,
                         windowed_rate, difference))
            print(f"{title} n={context}: flat {flat_rate:,.0f}/s, windowed "
                  f"{windowed_rate:,.0f}/s, max |diff| {difference:.1e}",
                  flush=True)
    print(f"\n{tf.config.threading.get_intra_op_parallelism_threads() or 'all'}"
          f" intra-op threads, {os.cpu_count()} CPUs, "
          f"{FLAGS.videos_per_batch} videos per batch\n")
    print("| model | n | window | flat segments/s | windowed segments/s "
          "| windowed / flat | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for title, context, width, flat_rate, windowed_rate, difference in rows:
        print(f"| {title} | {context} | {width} | {flat_rate:,.0f} | "
              f"{windowed_rate:,.0f} | {windowed_rate / flat_rate:.2f}x | "
              f"{difference:.1e} |")


if __name__ == "__main__":
    app.run(main)
