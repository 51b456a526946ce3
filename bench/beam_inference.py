r"""Segments/s of the Beam pipeline (DirectRunner) against inference.py.

  python bench/beam_inference.py [--data_dir=D] [--num_videos=240] \
      [--num_files=4] [--batch_size=64] [--longest_video=300]

Generates test records (made if absent), saves an untrained demo-size DBoF
run and exports it, then runs, each as its own command on the same files:
  inference.py            python -m yt8m_segments.inference (tf.data, 1 process)
  beam direct, 1 worker   python -m yt8m_segments.beam_inference
  beam direct, 2 workers  ... --num_shards=2 (+ merge)
                              -- --direct_running_mode=multi_processing
                              --direct_num_workers=2
and prints a table: wall seconds of the whole command (process start, model
load, pipeline start-up, cache write included), segments/s and the ratio to
inference.py. Requires the `beam` extra.
"""

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from yt8m_segments import flag_defs  # noqa: E402
from yt8m_segments.postprocess import cache  # noqa: E402
from yt8m_segments.prediction import export  # noqa: E402
from yt8m_segments.training import run_artifacts  # noqa: E402
from yt8m_segments.data import synthetic  # noqa: E402
from yt8m_segments.data import classes  # noqa: E402
from yt8m_segments.data.features import FeatureSpec  # noqa: E402
from yt8m_segments.models.registry import ModelConfig, build_model  # noqa: E402

flags.DEFINE_string("data_dir", None, "Generated data to read (made if absent).")
flags.DEFINE_integer("num_videos", 240, "Test videos when generating.")
flags.DEFINE_integer("num_files", 4, "Test files when generating.")
flags.DEFINE_integer("longest_video", 300, "Longest generated video.")
# --batch_size (flag_defs, default 64): inference.py's windows per batch; the
# Beam pipeline gets --serving_batch_size=batch_size // 8 videos per call.
flags.DEFINE_string("work_dir", None, "Where runs, export and caches go "
                    "(a temporary directory if unset).")
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS


def prepare(work_dir, data_dir):
    if not tf.io.gfile.glob(os.path.join(data_dir, "test-*.tfrecord")):
        synthetic.generate(data_dir, 2, 2, FLAGS.num_videos, seed=3,
                           num_classes=1000, num_active_classes=200,
                           num_segment_classes=200, min_frames=60,
                           max_frames=FLAGS.longest_video,
                           num_files_per_split=FLAGS.num_files)
    class_ids = sorted(classes.read_segment_label_ids(
        os.path.join(data_dir, "segment_label_ids.csv")))
    tf.keras.utils.set_random_seed(1)
    config = ModelConfig("DBoF", "MoE", len(class_ids), 1152,
                         {"dbof_cluster_size": 256, "dbof_hidden_size": 128})
    train_dir = os.path.join(work_dir, "run")
    run_artifacts.save_run(train_dir, build_model(config), config,
                           list(class_ids), FeatureSpec(),
                           extra={"stage": "finetune", "context_frames": 0})
    return train_dir, export.export(train_dir, os.path.join(work_dir, "export"))


def timed(name, args):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True,
                            text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{name} failed:\n{result.stderr[-3000:]}")
    return elapsed


def main(argv):
    del argv
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_beam_")
    data_dir = FLAGS.data_dir or os.path.join(work_dir, "data")
    train_dir, export_dir = prepare(work_dir, data_dir)
    pattern = os.path.join(data_dir, "test-*.tfrecord")
    beam_common = ["yt8m_segments.beam_inference",
                   f"--saved_model_dir={export_dir}",
                   f"--input_data_pattern={pattern}",
                   f"--serving_batch_size={max(1, FLAGS.batch_size // 8)}"]
    rows = []
    # (title, cache name, command, Beam pipeline options after `--`)
    runs = [
        ("inference.py (tf.data, 1 process)", "inference", [
            "yt8m_segments.inference", f"--train_dir={train_dir}",
            f"--input_data_pattern={pattern}",
            f"--batch_size={FLAGS.batch_size}"], []),
        ("beam DirectRunner, 1 worker", "beam1", beam_common, []),
        ("beam DirectRunner, 2 workers (multi_processing)", "beam2",
         beam_common + ["--num_shards=2"],
         ["--", "--direct_running_mode=multi_processing",
          "--direct_num_workers=2"]),
    ]
    for title, name, args, pipeline_args in runs:
        cache_dir = os.path.join(work_dir, f"cache_{name}")
        seconds = timed(title, [*args, f"--cache_dir={cache_dir}",
                                *pipeline_args])
        segments = cache.ProbabilityCache.open(cache_dir).shape[0]
        rows.append((title, seconds, segments))
        print(f"{title}: {segments} segments in {seconds:.1f} s", flush=True)
    base = rows[0][2] / rows[0][1]
    print(f"\n{os.cpu_count()} CPU cores, {rows[0][2]:,} segments "
          f"x {cache.ProbabilityCache.open(os.path.join(work_dir, 'cache_inference')).shape[1]}"
          " classes, whole commands timed\n")
    print("| path | wall s | segments/s | vs inference.py |")
    print("|---|---:|---:|---:|")
    for title, seconds, segments in rows:
        rate = segments / seconds
        print(f"| {title} | {seconds:.1f} | {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    app.run(main)
