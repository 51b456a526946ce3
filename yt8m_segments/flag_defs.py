"""Flags shared by several commands, defined once (absl forbids redefinition).

Names follow the YouTube-8M starter code where it has one.
"""

from absl import flags

from yt8m_segments.data import records
from yt8m_segments.data.features import FeatureSpec

flags.DEFINE_string("train_dir", None,
                    "Directory of a training run: written by train.py, read "
                    "by inference.py, eval.py and export.")
flags.DEFINE_integer("batch_size", 64, "Examples per batch.")
flags.DEFINE_string("feature_names", ",".join(records.DEFAULT_FEATURE_NAMES),
                    "Comma-separated per-frame features to read.")
flags.DEFINE_string("feature_sizes",
                    ",".join(str(s) for s in records.DEFAULT_FEATURE_SIZES),
                    "Comma-separated widths of --feature_names.")
flags.DEFINE_integer("num_classes", records.NUM_CLASSES,
                     "Size of the video-level vocabulary.")
flags.DEFINE_string("segment_labels_file", None,
                    "A segment_label_ids.csv naming the segment-rated classes. "
                    "Without it they are the classes rated in the records.")
flags.DEFINE_integer("segment_max_pred", 100000,
                     "K: at most this many segments per class in a "
                     "submission, and the K of MAP@K.")

FLAGS = flags.FLAGS


def feature_spec():
    return FeatureSpec.from_flags(FLAGS.feature_names, FLAGS.feature_sizes)
