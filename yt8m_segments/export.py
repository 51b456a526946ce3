r"""Export a trained run as a SavedModel for TensorFlow Serving.

  python -m yt8m_segments.export --train_dir=F [--video_train_dir=P] \
      --export_dir=E [--export_version=N] [--segment_labels_file=L]

Writes `E/<version>/` (TF Serving's layout: a model base path holding integer
versions; the next free integer unless --export_version is given), written
to a temporary directory first and renamed, so a server watching `E` never
sees half a model.

Signatures:
  serving_default(examples: string [B])
      `examples` are serialized frame-level SequenceExamples (docs/format.md).
      Parsing, dequantization and windowing run in the graph, exactly as the
      tf.data views do for test records: every 5-frame window from frame 0,
      the partial last window padded and masked, with the run's
      context_frames. Outputs:
        segment_video_index int32 [S]   which input record the window is from
        segment_start       int64 [S]   its first frame
        segment_id          string [S]  "<video id>:<start>"
        probabilities       float32 [S, C]
        video_id            string [B]
        class_ids           int32 [C]
      and with --video_train_dir (a run over the vocabulary, its model run on
      each whole video's first --max_frames frames):
        video_probabilities float32 [B, Cv]
        video_class_ids     int32 [Cv]
  predict_frames(frames: float32 [B, T, D], mask: bool [B, T])
      dequantized frames -> probabilities float32 [B, C] (the same columns).

The SavedModel needs nothing from this package to load: only TensorFlow.
"""

from absl import app
from absl import flags
from absl import logging

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.prediction import export

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS

flags.DEFINE_string("export_dir", None,
                    "Model base path: the SavedModel goes to <export_dir>/<version>.")
flags.DEFINE_integer("export_version", None,
                     "Version directory to write; default: one more than the "
                     "largest existing integer version (1 if none).")
# Frames of each video the video-level model reads: --max_frames.
flags.DEFINE_alias("export_max_frames", "max_frames")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("train_dir", "export_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    path = export.export(FLAGS.train_dir, FLAGS.export_dir,
                         FLAGS.video_train_dir, FLAGS.export_version,
                         FLAGS.segment_labels_file,
                         flag_defs.context_frames_override(), FLAGS.max_frames)
    logging.info("exported %s", path)
    print(path)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
