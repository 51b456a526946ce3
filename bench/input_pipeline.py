r"""Input pipeline throughput beside a naive parse and the model's training step.

  python bench/input_pipeline.py [--data_dir=D] [--num_videos=400] [--seconds=5]

Prints one row per view: records/s, frames/s, segments/s (windows or videos
produced), the speed-up over a naive one-record-at-a-time Python parse (which
dequantizes as the starter code's reader does), and how many times faster
than the demo model's training step the input is. Views yield quantized
frames (`quantized=True`, as train/inference/eval read them); the model step
dequantizes, as theirs do. Generated videos are 60-170 frames long (the real
test set averages ~115). Everything runs in this process, on the same files.
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from yt8m_segments.training import losses  # noqa: E402
from yt8m_segments.data import synthetic  # noqa: E402
from yt8m_segments.data import classes  # noqa: E402
from yt8m_segments.data import parsing  # noqa: E402
from yt8m_segments.data import records  # noqa: E402
from yt8m_segments.data import segment_cache  # noqa: E402
from yt8m_segments.data import video_cache  # noqa: E402
from yt8m_segments.data import views  # noqa: E402
from yt8m_segments.data.features import FeatureSpec  # noqa: E402
from yt8m_segments.models.registry import ModelConfig, build_model  # noqa: E402

flags.DEFINE_string("data_dir", None, "Generated data to read (made if absent).")
flags.DEFINE_integer("num_videos", 400, "Videos per split when generating.")
# The real test set has ~23 segments per video (2,062,258 in 89,506 videos):
# ~115 frames on average, twice the generator's default length.
flags.DEFINE_integer("min_frames", 60, "Shortest generated video (frames).")
flags.DEFINE_integer("max_frames", 170, "Longest generated video (frames).")
flags.DEFINE_float("seconds", 5.0, "Least time to measure each row for.")
flags.DEFINE_integer("batch_size", 256, "Batch size of every view.")
FLAGS = flags.FLAGS
SPEC = FeatureSpec()
VIDEO_LEVEL_SPEC = FeatureSpec(("mean_rgb", "mean_audio"), SPEC.sizes)


def measure(dataset, seconds):
    """Full passes until `seconds` have gone: (passes/s, examples/s).

    One warm-up pass first, so tracing the parse functions is not timed.
    """
    for _ in dataset:
        pass
    passes = examples = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in dataset:
            examples += int(batch["mask"].shape[0])
        passes += 1
    elapsed = time.perf_counter() - start
    return passes / elapsed, examples / elapsed


def measure_repeated(dataset, seconds):
    """Examples/s of an endless dataset, after one warm-up batch."""
    iterator = iter(dataset)
    next(iterator)
    examples = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        examples += int(next(iterator)["mask"].shape[0])
    return examples / (time.perf_counter() - start)


def model_step_rate(num_frames, batch_size, seconds):
    """Examples/s of one demo-model training step (flags/demo.flags sizes).

    Fed quantized uint8 frames like the views': dequantizing is in the step.
    """
    model = build_model(ModelConfig(
        "DBoF", "MoE", records.NUM_CLASSES, SPEC.total_size,
        {"dbof_cluster_size": 256, "dbof_hidden_size": 128,
         "dbof_pooling": "average"}))
    optimizer = keras.optimizers.Adam(1e-3)
    rng = np.random.default_rng(0)
    frames = tf.constant(rng.integers(0, 256, (batch_size, num_frames,
                                               SPEC.total_size)), tf.uint8)
    mask = tf.ones((batch_size, num_frames), tf.bool)
    labels = tf.constant(rng.random((batch_size, records.NUM_CLASSES)) > 0.999,
                         tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = losses.weighted_binary_crossentropy(labels, model(
                parsing.model_inputs({"frames": frames, "mask": mask}),
                training=True))
        optimizer.apply_gradients(zip(
            tape.gradient(loss, model.trainable_variables),
            model.trainable_variables))

    step()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch_size / (time.perf_counter() - start)


def naive_segments(files):
    """The per-record Python parse a first script would write, 5-frame windows."""
    for path in files:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            example = tf.train.SequenceExample.FromString(raw)
            features = example.feature_lists.feature_list
            frames = np.concatenate([
                np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8)
                          for f in features[name].feature])
                for name in SPEC.names], axis=1)
            frames = records.dequantize(frames.astype(np.float32))
            starts = range(0, len(frames), records.FRAMES_PER_SEGMENT)
            windows = [frames[s:s + 5] for s in starts]
            yield len(frames), len(windows)


def split_sizes(pattern):
    """(records, frames) of the files of `pattern`."""
    context = {"id": tf.io.FixedLenFeature([], tf.string)}
    sequence = {"rgb": tf.io.FixedLenSequenceFeature([], tf.string)}
    num_records = num_frames = 0
    for path in views.list_files(pattern):
        for raw in tf.data.TFRecordDataset(path):
            _, parsed = tf.io.parse_single_sequence_example(
                raw, context_features=context, sequence_features=sequence)
            num_records += 1
            num_frames += int(tf.shape(parsed["rgb"])[0])
    return num_records, num_frames


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or os.path.join(
        tempfile.gettempdir(), f"yt8m_bench_input_{FLAGS.num_videos}_"
        f"{FLAGS.min_frames}_{FLAGS.max_frames}")
    if not tf.io.gfile.glob(os.path.join(data_dir, "train_video-*.tfrecord")):
        synthetic.generate(data_dir, FLAGS.num_videos, FLAGS.num_videos,
                           FLAGS.num_videos, seed=0, video_level=True,
                           min_frames=FLAGS.min_frames,
                           max_frames=FLAGS.max_frames, num_files_per_split=4)
    pattern = {split: os.path.join(data_dir, f"{split}-*.tfrecord")
               for split in ("train", "validate", "test")}
    sizes = {split: split_sizes(p) for split, p in pattern.items()}
    # Video-level records: one (mean) frame per train video.
    pattern["train_video"] = os.path.join(data_dir, "train_video-*.tfrecord")
    sizes["train_video"] = (sizes["train"][0], sizes["train"][0])
    segment_classes = classes.segment_label_ids_from_records(pattern["validate"])
    b = FLAGS.batch_size

    def rated(n):
        return lambda: views.rated_segment_dataset(
            pattern["validate"], SPEC, segment_classes, b, context_frames=n,
            quantized=True)

    views_to_measure = [
        ("rated 5-frame segments", rated(0), "validate", 5),
        ("rated, context n=5", rated(5), "validate", 15),
        ("rated, context n=15", rated(15), "validate", 35),
        ("test windows", lambda: views.test_segment_dataset(
            pattern["test"], SPEC, b, quantized=True), "test", 5),
        ("pretraining, 30 random frames", lambda: views.video_dataset(
            pattern["train"], SPEC, records.NUM_CLASSES, 300, b,
            num_sample_frames=30, sample_random_frames=True, quantized=True),
         "train", 30),
        ("pretraining, video-level", lambda: views.video_level_dataset(
            pattern["train_video"], VIDEO_LEVEL_SPEC, records.NUM_CLASSES, b),
         "train_video", 1),
    ]

    start = time.perf_counter()
    naive_windows = sum(w for _, w in naive_segments(
        views.list_files(pattern["test"])))
    naive_elapsed = time.perf_counter() - start
    naive_records, naive_frames = sizes["test"]
    naive_rate = naive_windows / naive_elapsed

    step_rates = {}
    header = (f"{'view':<32} {'records/s':>10} {'frames/s':>11} "
              f"{'examples/s':>11} {'x naive':>8} {'x model step':>13}")
    lines = [header, "-" * len(header),
             f"{'naive Python parse, test windows':<32} "
             f"{naive_records / naive_elapsed:>10,.0f} "
             f"{naive_frames / naive_elapsed:>11,.0f} {naive_rate:>11,.0f} "
             f"{1.0:>8.1f} {'':>13}"]
    for name, make, split, width in views_to_measure:
        passes, examples = measure(make(), FLAGS.seconds)
        num_records, num_frames = sizes[split]
        if width not in step_rates:
            step_rates[width] = model_step_rate(width, b, FLAGS.seconds)
        lines.append(
            f"{name:<32} {passes * num_records:>10,.0f} "
            f"{passes * num_frames:>11,.0f} {examples:>11,.0f} "
            f"{examples / naive_rate:>8.1f} {examples / step_rates[width]:>13.1f}")

    def cache_row(name, build, dataset, frames_per_example, step_rate,
                  examples_are_videos):
        """A row for reading a cache (built once, timed), and its build time."""
        start = time.perf_counter()
        build()
        build_seconds = time.perf_counter() - start
        cached = measure_repeated(dataset(), FLAGS.seconds)
        videos = f"{cached:,.0f}" if examples_are_videos else ""
        lines.append(
            f"{name:<32} {videos:>10} "
            f"{cached * frames_per_example:>11,.0f} {cached:>11,.0f} "
            f"{cached / naive_rate:>8.1f} {cached / step_rate:>13.1f}")
        return build_seconds

    # Fine-tuning from the rated-segment cache (a segment is not a record),
    # and pretraining from the video cache (30 random frames of each video):
    # extracted once, then read with shuffling over all examples.
    cache_dir = os.path.join(data_dir, "segment_cache")
    build_seconds = cache_row(
        "rated 5-frame, segment cache",
        lambda: segment_cache.build(
            cache_dir, views.list_files(pattern["validate"]), SPEC,
            segment_classes),
        lambda: segment_cache.dataset(cache_dir, b, shuffle=True, seed=0,
                                      repeat=True), 5, step_rates[5], False)
    video_cache_dir = os.path.join(data_dir, "video_cache")
    video_build_seconds = cache_row(
        "pretraining 30 frames, video cache",
        lambda: video_cache.build(video_cache_dir,
                                  views.list_files(pattern["train"]), SPEC),
        lambda: video_cache.dataset(
            video_cache_dir, b, num_sample_frames=30,
            sample_random_frames=True, shuffle=True, seed=0, repeat=True),
        30, step_rates[30], True)
    video_level_cache_dir = os.path.join(data_dir, "video_level_cache")
    cache_row(
        "video-level, video cache",
        lambda: video_cache.build(video_level_cache_dir,
                                  views.list_files(pattern["train_video"]),
                                  VIDEO_LEVEL_SPEC, video_level=True),
        lambda: video_cache.dataset(video_level_cache_dir, b, shuffle=True,
                                    seed=0, repeat=True),
        1, step_rates[1], True)
    lines.append("")
    lines.append(f"caches built once: segment cache {build_seconds:.1f} s "
                 f"({sizes['validate'][0]} videos), video cache "
                 f"{video_build_seconds:.1f} s ({sizes['train'][0]} videos); "
                 "their frames/s count the frames served")
    lines.append("model step (demo DBoF+MoE, batch %d): " % b + ", ".join(
        f"{width} frames {rate:,.0f} examples/s"
        for width, rate in sorted(step_rates.items())))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
