"""Run a model over a segment dataset and collect ids and fp16 probabilities."""

import numpy as np
import tensorflow as tf

from yt8m_segments.data import reader


def predict_segments(model, dataset, files, columns=None, extra_keys=()):
    """Probabilities for every example of `dataset` (read from `files`).

    Returns (segment ids as str array [N], float16 array [N, C] of the chosen
    output `columns` (all when None), dict of `extra_keys` arrays).
    """
    column_index = None if columns is None else tf.constant(columns, tf.int32)

    @tf.function(reduce_retracing=True)
    def forward(frames, mask):
        probabilities = model({"frames": frames, "mask": mask}, training=False)
        if column_index is not None:
            probabilities = tf.gather(probabilities, column_index, axis=1)
        return tf.cast(probabilities, tf.float16)

    ids, chunks = [], []
    extras = {key: [] for key in extra_keys}
    for batch in reader.iterate(dataset, files):
        chunks.append(forward(batch["frames"], batch["mask"]).numpy())
        ids.append(batch["segment_id"].numpy())
        for key in extra_keys:
            extras[key].append(batch[key].numpy())
    if not ids:
        raise ValueError("the input holds no segment to predict")
    segment_ids = np.concatenate(ids).astype(str)
    return (segment_ids, np.concatenate(chunks),
            {key: np.concatenate(values) for key, values in extras.items()})
