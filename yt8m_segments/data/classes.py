"""The set of segment-rated classes: from `segment_label_ids.csv` or the records."""

import csv

import tensorflow as tf

from yt8m_segments import files
from yt8m_segments.data import parsing
from yt8m_segments.data import reader
from yt8m_segments.data import records


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


def segment_label_ids_from_records(pattern, vocabulary_size=records.NUM_CLASSES,
                                   compression="auto",
                                   skip_corrupt_records=False):
    """Every `segment_labels` value seen in the validate records, sorted.

    Read as every command reads records (reader.record_dataset, batches
    parsed in one op), so a corrupt or unreadable file, or a label outside
    the vocabulary, is named the same way (file, record, video).
    """
    files = reader.list_files(pattern)
    context = {"id": tf.io.FixedLenFeature([], tf.string, default_value=""),
               "segment_labels": tf.io.RaggedFeature(tf.int64)}

    def labels_of(paths, indices, serialized):
        parsed = tf.io.parse_sequence_example(serialized,
                                              context_features=context)[0]
        labels = parsed["segment_labels"]
        check = parsing.assert_records(
            [parsing.label_problem(labels, vocabulary_size, "segment label")],
            paths, indices, parsed["id"])
        with tf.control_dependencies([check]):
            return tf.identity(labels.flat_values)

    dataset = reader.record_dataset(
        files, compression=compression,
        skip_corrupt_records=skip_corrupt_records).batch(256).map(labels_of)
    seen = set()
    for labels in reader.iterate(dataset, files, compression):
        seen.update(labels.numpy().tolist())
    if not seen:
        raise ValueError(f"no segment_labels in the records of '{pattern}'")
    return sorted(seen)


def resolve_segment_label_ids(segment_labels_file, data_pattern,
                              **record_options):
    """The file's classes when given, else those rated in the records
    (segment_label_ids_from_records with `record_options`)."""
    if segment_labels_file:
        return read_segment_label_ids(segment_labels_file)
    return segment_label_ids_from_records(data_pattern, **record_options)
