"""The set of segment-rated classes: from `segment_label_ids.csv` or the records."""

import csv

import tensorflow as tf

from yt8m_segments import files
from yt8m_segments.data import reader


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


def segment_label_ids_from_records(pattern, compression="auto",
                                   skip_corrupt_records=False):
    """Every `segment_labels` value seen in the validate records, sorted.

    Read as every command reads records (reader.record_dataset, batches
    parsed in one op), so a corrupt or unreadable file is named the same way.
    """
    files = reader.list_files(pattern)
    context = {"segment_labels": tf.io.RaggedFeature(tf.int64)}
    dataset = reader.record_dataset(
        files, compression=compression,
        skip_corrupt_records=skip_corrupt_records).map(
            lambda path, index, serialized: serialized).batch(256).map(
            lambda batch: tf.io.parse_sequence_example(
                batch, context_features=context)[0]["segment_labels"].flat_values)
    seen = set()
    for labels in reader.iterate(dataset, files, compression):
        seen.update(labels.numpy().tolist())
    if not seen:
        raise ValueError(f"no segment_labels in the records of '{pattern}'")
    return sorted(seen)


def resolve_segment_label_ids(segment_labels_file, data_pattern,
                              **input_options):
    """The file's classes when given, else those rated in the records."""
    if segment_labels_file:
        return read_segment_label_ids(segment_labels_file)
    return segment_label_ids_from_records(data_pattern, **input_options)
