"""Run a model over a segment (or video) dataset: ids and fp16 probabilities."""

import numpy as np
import tensorflow as tf

from yt8m_segments.data import parsing
from yt8m_segments.data import reader


class Predictor:
    """A model's forward pass, traced once, reused over many datasets.

    `columns`: the output columns to keep (all when None). `id_key`: the
    dataset key naming each example ("segment_id" for segment views, "id"
    for views.video_dataset). `mean_frame`: feed the model each example's
    mean frame (a run trained on video-level records,
    `Run.reads_mean_frame`). `jit_compile`: compile the forward pass with
    XLA.
    """

    def __init__(self, model, columns=None, id_key="segment_id",
                 mean_frame=False, jit_compile=False):
        self.model = model
        self.id_key = id_key
        self.mean_frame = mean_frame
        self.num_columns = (int(model.outputs[0].shape[-1]) if columns is None
                            else len(columns))
        column_index = None if columns is None else tf.constant(columns, tf.int32)

        @tf.function(reduce_retracing=True, jit_compile=jit_compile)
        def forward(frames, mask):
            probabilities = model({"frames": frames, "mask": mask}, training=False)
            if column_index is not None:
                probabilities = tf.gather(probabilities, column_index, axis=1)
            return probabilities

        self._forward = forward

    def _forward_batch(self, batch):
        """(probabilities [N, C], ids [N]) of one batch."""
        inputs = parsing.model_inputs(batch)
        if self.mean_frame:
            inputs = parsing.mean_frame(inputs)
        return (self._forward(inputs["frames"], inputs["mask"]),
                batch[self.id_key])

    def batches(self, dataset, files, extra_keys=()):
        """Yields (ids [b] bytes, float16 [b, C], {key: [b, ...]}) per batch,
        `extra_keys` taken from the batch (numpy)."""
        for batch in reader.iterate(dataset, files):
            probabilities, batch_ids = self._forward_batch(batch)
            extras = {}
            for key in extra_keys:
                values = batch[key]
                if "segment_mask" in batch and key not in ("frames", "mask"):
                    values = tf.boolean_mask(values, batch["segment_mask"])
                extras[key] = values.numpy()
            # fp16 on the host: a float16 cast in the graph makes oneDNN log
            # "supports DT_HALF only on platforms with AVX-512" on most CPUs.
            yield (batch_ids.numpy(), probabilities.numpy().astype(np.float16),
                   extras)

    def predict(self, dataset, files, extra_keys=(), on_batch=None,
                allow_empty=False):
        """(ids as str array [N], float16 [N, C], dict of `extra_keys` arrays).

        `on_batch(num_examples)` is called after every batch (progress).
        """
        ids, chunks = [], []
        extras = {key: [] for key in extra_keys}
        for batch_ids, probabilities, batch_extras in self.batches(
                dataset, files, extra_keys):
            chunks.append(probabilities)
            ids.append(batch_ids)
            for key, values in batch_extras.items():
                extras[key].append(values)
            if on_batch is not None:
                on_batch(len(ids[-1]))
        if not ids:
            if not allow_empty:
                raise ValueError("the input holds no segment to predict: "
                                 f"{reader.describe_files(files)}")
            return (np.array([], dtype=str),
                    np.zeros((0, self.num_columns), np.float16),
                    {key: np.array([]) for key in extra_keys})
        ids = np.concatenate(ids).astype(str)
        reader.check_unique_segments(ids, files)
        return (ids, np.concatenate(chunks),
                {key: np.concatenate(values) for key, values in extras.items()})


class WindowedPredictor(Predictor):
    """`Predictor` over the per-video view (`per_video=True`): per-frame work
    once per video, then each window pooled (models/windowed.py).

    Yields the same ids and rows, in the same order, as `Predictor` on the
    flat view of the same windows.
    """

    def __init__(self, model, columns=None, jit_compile=False):
        from yt8m_segments.models import windowed

        self.model = model
        self.id_key = "segment_id"
        self.num_columns = (int(model.outputs[0].shape[-1]) if columns is None
                            else len(columns))
        column_index = None if columns is None else tf.constant(columns, tf.int32)
        runner = windowed.windowed_model(model)

        @tf.function(reduce_retracing=True, jit_compile=jit_compile)
        def forward(frames, mask, window_index, window_mask, segment_mask):
            probabilities = runner.segments(frames, mask, window_index,
                                            window_mask, segment_mask)
            if column_index is not None:
                probabilities = tf.gather(probabilities, column_index, axis=1)
            return probabilities

        self._windowed_forward = forward

    def _forward_batch(self, batch):
        inputs = parsing.model_inputs(batch)
        probabilities = self._windowed_forward(
            inputs["frames"], inputs["mask"], batch["window_index"],
            batch["window_mask"], batch["segment_mask"])
        ids = tf.boolean_mask(batch["segment_id"], batch["segment_mask"])
        return probabilities, ids


def predict_segments(model, dataset, files, columns=None, extra_keys=()):
    """Probabilities for every example of `dataset` (read from `files`).

    Returns (segment ids as str array [N], float16 array [N, C] of the chosen
    output `columns` (all when None), dict of `extra_keys` arrays).
    """
    return Predictor(model, columns).predict(dataset, files, extra_keys)
