"""The YouTube-8M record formats: constants, (de)quantization, writing.

Reading lives in `views.py`; this module holds what both the reader and every
writer (the synthetic generator, tests) must agree on. docs/format.md.
"""

import numpy as np
import tensorflow as tf

from yt8m_segments.atomic import atomic_path

NUM_CLASSES = 3862
# Frames (1 per second) a video's record holds at most.
MAX_FRAMES = 300
FRAMES_PER_SEGMENT = 5
DEFAULT_FEATURE_NAMES = ("rgb", "audio")
DEFAULT_FEATURE_SIZES = (1024, 128)
# The 2018 video-level records name each feature's mean so.
VIDEO_LEVEL_PREFIX = "mean_"

_MAX_QUANTIZED_VALUE = 2.0
_MIN_QUANTIZED_VALUE = -2.0


def dequantize(values):
    """uint8 -> float, exactly as the starter code's `utils.Dequantize`.

    `x * (4 / 255) + (4 / 512 - 2)`: the bin width times the value plus half a
    bin, offset by the range's minimum. Works on numpy arrays and tf tensors.
    """
    quantized_range = _MAX_QUANTIZED_VALUE - _MIN_QUANTIZED_VALUE
    scalar = quantized_range / 255.0
    bias = (quantized_range / 512.0) + _MIN_QUANTIZED_VALUE
    return values * scalar + bias


def quantize(values):
    """float -> uint8 as the feature extractor did: clip to [-2, 2], round."""
    clipped = np.clip(values, _MIN_QUANTIZED_VALUE, _MAX_QUANTIZED_VALUE)
    scaled = (clipped - _MIN_QUANTIZED_VALUE) * 255.0 / (
        _MAX_QUANTIZED_VALUE - _MIN_QUANTIZED_VALUE)
    return np.round(scaled).astype(np.uint8)


def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def make_frame_example(video_id, labels, features, segment_start_times=None,
                       segment_labels=None, segment_scores=None):
    """A frame-level `tf.train.SequenceExample` in the real 2018/2019 layout.

    Args:
      video_id: str.
      labels: video-level class indices.
      features: dict feature name -> uint8 array [num_frames, size]; one bytes
        value per frame is written to the feature list of that name.
      segment_start_times, segment_labels, segment_scores: the 2019 validate
        fields; `segment_end_times` is written as start + 5 like the real files.
    """
    context = {
        "id": _bytes_feature([video_id.encode("utf-8")]),
        "labels": _int64_feature(labels),
    }
    if segment_start_times is not None:
        starts = np.asarray(segment_start_times, np.int64)
        context["segment_start_times"] = _int64_feature(starts)
        context["segment_end_times"] = _int64_feature(starts + FRAMES_PER_SEGMENT)
        context["segment_labels"] = _int64_feature(segment_labels)
        context["segment_scores"] = _float_feature(segment_scores)
    feature_lists = {}
    for name, frames in features.items():
        frames = np.asarray(frames, np.uint8)
        feature_lists[name] = tf.train.FeatureList(
            feature=[_bytes_feature([row.tobytes()]) for row in frames])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def make_video_level_example(video_id, labels, features):
    """A 2018 video-level `tf.train.Example`: `id`, `labels`, float features.

    `features`: dict name -> float array [size], e.g. `mean_rgb` [1024] and
    `mean_audio` [128], the dequantized frames averaged over the video.
    """
    feature = {"id": _bytes_feature([video_id.encode("utf-8")]),
               "labels": _int64_feature(labels)}
    for name, values in features.items():
        feature[name] = _float_feature(np.asarray(values, np.float32).ravel())
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_records(path, examples):
    """Write serialisable protos to a TFRecord file atomically (temp + rename)."""
    with atomic_path(path) as tmp_path:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
