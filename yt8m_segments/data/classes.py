"""The set of segment-rated classes: from `segment_label_ids.csv` or the records."""

import csv

import tensorflow as tf

from yt8m_segments import files
from yt8m_segments.data import views


def read_segment_label_ids(path):
    """Class ids from a `segment_label_ids.csv` (header `Index`), sorted."""
    with files.open_input(path, what="segment label file") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != ["Index"]:
        raise ValueError(f"{path}: expected the header 'Index' on line 1")
    ids = []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            ids.append(int(row[0]))
        except ValueError:
            raise ValueError(
                f"{path}, line {line_number}: not a class id: {row[0]!r}"
            ) from None
    if not ids:
        raise ValueError(f"{path}: no class ids")
    return sorted(set(ids))


def segment_label_ids_from_records(pattern):
    """Every `segment_labels` value seen in the validate records, sorted."""
    context = {"segment_labels": tf.io.VarLenFeature(tf.int64)}

    def labels_of(serialized):
        parsed, _ = tf.io.parse_single_sequence_example(
            serialized, context_features=context)
        return parsed["segment_labels"].values

    dataset = tf.data.TFRecordDataset(views.list_files(pattern)).map(labels_of)
    seen = set()
    for labels in dataset.as_numpy_iterator():
        seen.update(labels.tolist())
    if not seen:
        raise ValueError(f"no segment_labels in the records of '{pattern}'")
    return sorted(seen)


def resolve_segment_label_ids(segment_labels_file, data_pattern):
    """The file's classes when given, else those rated in the records."""
    if segment_labels_file:
        return read_segment_label_ids(segment_labels_file)
    return segment_label_ids_from_records(data_pattern)
