"""SavedModel building for TensorFlow Serving, as a library: the serving graph
(parsing, windowing and the model(s) of a run) and its versioned, atomic
export, with plain arguments, for the export command
(yt8m_segments/export.py, whose docstring describes the signatures), tests
and benchmarks."""

import os
import re
import uuid

import tensorflow as tf

from yt8m_segments import locking
from yt8m_segments.training import run_artifacts
from yt8m_segments.data import parsing
from yt8m_segments.data import records
from yt8m_segments.data import views

SEGMENT_FRAMES = views.SEGMENT_FRAMES
_VERSION_RE = re.compile(r"^\d+$")


def _variables(model):
    """The tf.Variables behind a Keras 3 model, so the SavedModel saves them."""
    return [getattr(v, "value", v) for v in model.variables]


class ServingModule(tf.Module):
    """The exported graph: parsing + windowing + the model(s).

    `mean_frame` / `video_mean_frame`: feed the segment / video model each
    window's / video's mean frame (a run trained on video-level records,
    `Run.reads_mean_frame`), as inference does.
    """

    def __init__(self, model, feature_spec, class_ids, columns,
                 context_frames=0, video_model=None, video_class_ids=None,
                 video_columns=None, max_frames=records.MAX_FRAMES, mean_frame=False,
                 video_mean_frame=False):
        super().__init__(name="yt8m_segments_serving")
        self._model = model
        self._model_variables = _variables(model)
        self._feature_spec = feature_spec
        self._context_frames = int(context_frames)
        self._columns = tf.constant(columns, tf.int32)
        self._class_ids = tf.constant(class_ids, tf.int32)
        self._video_model = video_model
        self._max_frames = int(max_frames)
        self._mean_frame = bool(mean_frame)
        self._video_mean_frame = bool(video_mean_frame)
        if video_model is not None:
            self._video_model_variables = _variables(video_model)
            self._video_columns = tf.constant(video_columns, tf.int32)
            self._video_class_ids = tf.constant(video_class_ids, tf.int32)
        size = feature_spec.total_size
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="examples")])
        self.predict_frames = tf.function(self._predict_frames, input_signature=[
            tf.TensorSpec([None, None, size], tf.float32, name="frames"),
            tf.TensorSpec([None, None], tf.bool, name="mask")])

    def _segment_probabilities(self, frames, mask):
        inputs = {"frames": frames, "mask": mask}
        if self._mean_frame:
            inputs = parsing.mean_frame(inputs)
        probabilities = self._model(inputs, training=False)
        return tf.gather(tf.cast(probabilities, tf.float32), self._columns,
                         axis=1)

    def _predict_frames(self, frames, mask):
        return {"probabilities": self._segment_probabilities(frames, mask)}

    def _serve(self, examples):
        num_records = tf.shape(examples)[0]
        # parse_frame_batch names file and record in its errors: a request
        # has no file, so the record is its position in the request.
        parsed = parsing.parse_frame_batch(
            tf.fill([num_records], "request"),
            tf.range(num_records, dtype=tf.int64), examples,
            self._feature_spec)
        num_frames = parsed["num_frames"]
        # Every window from frame 0 (as views.test_segment_dataset).
        num_windows = (num_frames + SEGMENT_FRAMES - 1) // SEGMENT_FRAMES
        rows = tf.repeat(tf.range(num_records), num_windows)
        first_window = tf.cumsum(num_windows, exclusive=True)
        starts = (tf.range(tf.reduce_sum(num_windows))
                  - tf.gather(first_window, rows)) * SEGMENT_FRAMES
        index, mask = views.window_indices(num_frames, rows, starts,
                                           self._context_frames)
        raw = parsing.gather_frames(
            parsed, tf.gather(parsed["row_splits"], rows)[:, None]
            + tf.cast(index, tf.int64))
        windows = parsing.dequantize_masked(raw, mask)
        starts = tf.cast(starts, tf.int64)
        outputs = {
            "segment_video_index": rows,
            "segment_start": starts,
            "segment_id": tf.strings.join(
                [tf.gather(parsed["id"], rows), tf.strings.as_string(starts)],
                separator=":"),
            "probabilities": self._segment_probabilities(windows, mask),
            "video_id": parsed["id"],
            "class_ids": self._class_ids,
        }
        if self._video_model is not None:
            # Whole videos, as views.video_dataset reads them for pretraining.
            flat_index, video_mask = parsing.dense_frame_index(
                parsed, self._max_frames)
            video_frames = parsing.dequantize_masked(
                parsing.gather_frames(parsed, flat_index), video_mask)
            video_inputs = {"frames": video_frames, "mask": video_mask}
            if self._video_mean_frame:
                video_inputs = parsing.mean_frame(video_inputs)
            video = self._video_model(video_inputs, training=False)
            outputs["video_probabilities"] = tf.gather(
                tf.cast(video, tf.float32), self._video_columns, axis=1)
            outputs["video_class_ids"] = self._video_class_ids
        return outputs


def build_module(train_dir, video_train_dir=None, segment_labels_file=None,
                 context_frames=None, max_frames=records.MAX_FRAMES):
    """A ServingModule for the run in `train_dir` (and a video-level run)."""
    run = run_artifacts.Run(train_dir)
    class_ids = run.segment_class_ids(segment_labels_file)
    video_kwargs = {}
    if video_train_dir:
        video_run = run_artifacts.Run(video_train_dir)
        if video_run.feature_spec != run.feature_spec:
            raise ValueError(
                f"{video_train_dir} reads features {video_run.feature_spec} but "
                f"{train_dir} reads {run.feature_spec}")
        video_kwargs = dict(video_model=video_run.model,
                            video_class_ids=list(video_run.class_ids),
                            video_columns=list(range(len(video_run.class_ids))),
                            video_mean_frame=video_run.reads_mean_frame)
    return ServingModule(run.model, run.feature_spec, class_ids,
                         run.columns_for(class_ids),
                         run.context_frames(context_frames),
                         max_frames=max_frames,
                         mean_frame=run.reads_mean_frame, **video_kwargs)


def next_version(export_dir):
    """One more than the largest integer directory in `export_dir` (1 if none)."""
    if not tf.io.gfile.isdir(export_dir):
        return 1
    versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(export_dir)
                if _VERSION_RE.match(name.rstrip("/"))]
    return max(versions, default=0) + 1


TMP_PREFIX = ".tmp-"


def remove_killed_exports(export_dir):
    """Remove the hidden temporaries (`.tmp-<version>-<id>`) of exports
    killed before their rename: invisible to TF Serving, but no later export
    reused their random names, so each kill stranded a SavedModel's size
    for good (found by bench/kill_points.py). Called holding the directory
    (locking.hold), so none is being written; object stores, which have no
    lock, are left alone."""
    if "://" in export_dir:
        return
    for name in tf.io.gfile.listdir(export_dir):
        if name.startswith(TMP_PREFIX):
            tf.io.gfile.rmtree(os.path.join(export_dir, name.rstrip("/")))


def export(train_dir, export_dir, video_train_dir=None, version=None,
           segment_labels_file=None, context_frames=None, max_frames=records.MAX_FRAMES):
    """Write the SavedModel to `<export_dir>/<version>`; returns that path.
    One export at a time per export_dir (locking.hold): two would pick the
    same next version."""
    if version is not None and int(version) < 0:
        raise ValueError(f"export version must be a non-negative integer, got {version}")
    with locking.hold(export_dir, "exports"):
        version = next_version(export_dir) if version is None else int(version)
        target = os.path.join(export_dir, str(version))
        if tf.io.gfile.exists(target):
            raise FileExistsError(f"{target} already exists; pick another "
                                  "--export_version or leave it out")
        module = build_module(train_dir, video_train_dir, segment_labels_file,
                              context_frames, max_frames)
        tf.io.gfile.makedirs(export_dir)
        remove_killed_exports(export_dir)
        # TF Serving only loads integer directories: a temporary name is invisible.
        tmp = os.path.join(export_dir,
                           f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
        signatures = {
            "serving_default": module.serve.get_concrete_function(),
            "predict_frames": module.predict_frames.get_concrete_function(),
        }
        try:
            tf.saved_model.save(module, tmp, signatures=signatures)
            tf.io.gfile.rename(tmp, target)
        except BaseException:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.rmtree(tmp)
            raise
        return target
