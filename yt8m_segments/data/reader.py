"""Files to records: globbing, folds, compression, sharding and corrupt records.

Every record leaves here as (file, record index, serialized bytes), so any
later error can name the file and the record. Reading is TFRecordDataset's
(C++, CRC-checked). Corrupt data surfaces as tf.errors.DataLossError; `iterate`
turns it into a `CorruptRecordError` naming the file and record, found by a
scan of the TFRecord framing (`scan_file`). With `skip_corrupt_records`, files
are scanned first and only their good records are read.
"""

import gzip
import os
import re
import struct
import zlib

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_segments import files as files_lib

_GZIP_MAGIC = b"\x1f\x8b"
_MASK_DELTA = 0xA282EAD8
# Ends every corrupt-record message.
SKIP_HINT = " (pass --skip_corrupt_records to skip such records)"


class InputError(ValueError):
    """Bad input data, with the file and record that hold it."""


class CorruptRecordError(InputError):
    """A record that fails its length or data checksum, or a truncated file."""


def list_files(pattern):
    """Sorted files matching a (comma-separated) glob; a clear error if none do."""
    files = []
    for part in pattern.split(","):
        files.extend(tf.io.gfile.glob(part.strip()))
    if not files:
        raise FileNotFoundError(
            f"no file matches the data pattern '{pattern}'"
            + "".join(_why_nothing_matches(p.strip()) for p in pattern.split(",")))
    return sorted(set(files))


def _why_nothing_matches(pattern):
    """Why a local glob found nothing, where the directory says: it is
    missing, or the job may not list it (a glob then just finds nothing)."""
    directory = os.path.dirname(pattern) or "."
    if "://" in directory or any(c in directory for c in "*?["):
        return ""
    try:
        os.listdir(directory)
    except FileNotFoundError:
        return f" (no directory {directory})"
    except OSError as error:
        return f" (cannot list {directory}: {error.strerror})"
    return ""


def select_fold(files, num_folds=1, fold=0, holdout=False):
    """Deterministic split by file: file i belongs to fold i % num_folds.

    `holdout=False` gives every file outside `fold` (training), `True` the
    files of `fold` (validation); num_folds=6 is the 2nd-place paper's 5/6 vs
    1/6 split. num_folds=1 keeps every file either way.
    """
    if num_folds <= 1:
        return list(files)
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold {fold} is not in [0, {num_folds})")
    chosen = [f for i, f in enumerate(sorted(files))
              if (i % num_folds == fold) == holdout]
    if not chosen:
        raise ValueError(
            f"fold {fold} of {num_folds} leaves no {'holdout' if holdout else 'training'} "
            f"file among {len(files)}")
    return chosen


def is_gzip(path):
    return files_lib.read_head(path, 2) == _GZIP_MAGIC


def compression_of(path, compression="auto"):
    """"GZIP" or "" for TFRecordDataset; "auto" looks at the file's first bytes."""
    if compression == "auto":
        return "GZIP" if is_gzip(path) else ""
    if compression not in ("", "none", "GZIP"):
        raise ValueError(f"unknown compression '{compression}'; use auto, none "
                         "or GZIP")
    return "" if compression == "none" else compression


def _masked_crc(data):
    import google_crc32c  # a small C extension; needed only to check framing
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# A record's length that no record of this format reaches (a 300-frame
# SequenceExample is ~350 KB): reading it would ask for up to 2^64 bytes.
MAX_RECORD_BYTES = 1 << 31
# What a damaged GZIP stream raises while it is read.
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _open(path, compression):
    handle = tf.io.gfile.GFile(path, "rb")
    return gzip.GzipFile(fileobj=handle) if compression == "GZIP" else handle


def walk_records(path, compression="auto"):
    """Yields (record index, bytes, None) per good record of a TFRecord file,
    (record index, None, problem) per bad one.

    A data checksum mismatch loses only that record; a bad length or a
    truncated file ends the walk, since the rest cannot be framed.
    """
    compression = compression_of(path, compression)
    with _open(path, compression) as handle:
        index = 0
        while True:
            try:
                header = handle.read(12)
            except _GZIP_ERRORS as error:
                yield index, None, f"damaged GZIP stream ({error})"
                return
            if not header:
                return
            if len(header) < 12:
                yield index, None, "truncated file (partial header)"
                return
            if _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
                yield index, None, ("length checksum mismatch; the rest of "
                                    "the file cannot be framed")
                return
            (length,) = struct.unpack("<Q", header[:8])
            if length > MAX_RECORD_BYTES:
                yield index, None, (f"record length {length} is past any "
                                    "record's; the rest of the file cannot "
                                    "be framed")
                return
            try:
                data = handle.read(length)
                footer = handle.read(4)
            except _GZIP_ERRORS as error:
                yield index, None, f"damaged GZIP stream ({error})"
                return
            if len(data) < length or len(footer) < 4:
                yield index, None, "truncated file (partial record)"
                return
            if _masked_crc(data) != struct.unpack("<I", footer)[0]:
                yield index, None, "data checksum mismatch"
            else:
                yield index, data, None
            index += 1


def past_the_end(path, compression):
    """A message naming the first record whose length runs past the end of an
    uncompressed local file (or a header cut short), or "".

    TensorFlow's reader allocates a record's stated length before reading it:
    a length of 2^40 with a valid checksum crashes the process (SIGSEGV).
    Seeking header to header costs one small read per record; GZIP streams
    cannot be sought and remote files would pay a request per record, so
    both are left to TensorFlow.
    """
    if compression or "://" in path:
        return ""
    try:
        size = os.path.getsize(path)
        handle = open(path, "rb")
    except OSError:
        return ""  # TensorFlow's reader names the file it cannot open
    with handle:
        offset = index = 0
        while offset + 12 <= size:
            handle.seek(offset)
            header = handle.read(12)
            if _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
                return ""  # TensorFlow reports this one itself
            (length,) = struct.unpack("<Q", header[:8])
            offset += 16 + length
            if offset > size:
                return (f"corrupt record in {path}, record {index}: record "
                        f"length {length} runs past the end of the file"
                        f"{SKIP_HINT}")
            index += 1
    if offset < size:  # TensorFlow reads a file of under 12 bytes as empty
        return (f"corrupt record in {path}, record {index}: truncated file "
                f"(partial header){SKIP_HINT}")
    return ""


def describe_files(files, most=3):
    """The input files for a message: `a, b, c and 4 more`."""
    files = [str(f) for f in files]
    if len(files) <= most:
        return ", ".join(files) or "no file"
    return f"{', '.join(files[:most])} and {len(files) - most} more"


def check_unique_segments(segment_ids, files):
    """An InputError naming the video whose id the input holds twice (its
    segment ids repeat): every count and rank would take it twice."""
    unique, counts = np.unique(np.asarray(segment_ids, str), return_counts=True)
    if len(unique) < len(segment_ids):
        video_id = str(unique[counts > 1][0]).rpartition(":")[0]
        raise InputError(f"video id {video_id} appears more than once in "
                         f"{describe_files(files)}")


def scan_file(path, compression="auto"):
    """(number of good records, [(record index, problem)]) of a file."""
    good, problems = 0, []
    for index, _, problem in walk_records(path, compression):
        if problem:
            problems.append((index, problem))
        else:
            good += 1
    return good, problems


def good_records(path, compression="auto"):
    """Yields (record index, bytes) for every record whose checksums verify."""
    for index, data, problem in walk_records(path, compression):
        if problem is None:
            yield index, data


def describe_corruption(files, compression="auto"):
    """A message naming the first corrupt record among `files`, or None."""
    for path in files:
        _, problems = scan_file(path, compression)
        if problems:
            index, problem = problems[0]
            return f"corrupt record in {path}, record {index}: {problem}"
    return None


_ASSERTION = re.compile(r"assertion failed: (.*?)(?:\n|$)")
# TF's parse errors name the feature but not the record.
_TYPE_MISMATCH = re.compile(r"(?:Key|Context feature|Feature list): (\w+)[.,]"
                            r".*Data types don't match\. Expected type: (\w+)")
_PROTO_KINDS = {"bytes_list": "string", "float_list": "float",
                "int64_list": "int64"}


def _record_problem(data, key=None, expected=None):
    """Why one serialized record fails to parse, or None.

    The record is read as a SequenceExample: a 2018 video-level Example has
    the same wire form, its features reading as the context.
    """
    try:
        example = tf.train.SequenceExample.FromString(data)
    except Exception:  # protobuf's DecodeError has no stable import path
        return "not a valid tf.train.SequenceExample or Example protobuf", ""
    if key is None:
        return None
    video_id = b"".join(example.context.feature["id"].bytes_list.value
                        if "id" in example.context.feature else [])
    features = ([example.context.feature[key]]
                if key in example.context.feature else [])
    if key in example.feature_lists.feature_list:
        features.extend(example.feature_lists.feature_list[key].feature)
    for feature in features:
        kind = _PROTO_KINDS.get(feature.WhichOneof("kind"))
        if kind and kind != expected:
            return (f"feature '{key}' holds {kind} values, not {expected}",
                    video_id.decode("utf-8", "replace"))
    return None


def locate_parse_error(message, records):
    """A message naming the first of `records` ((path, record index,
    serialized)) that TF's parser refused with `message`, or None.

    Protobuf reads each record (slow, but only once a parse has failed): for
    a type mismatch, the first whose named feature has another type; for a
    malformed protobuf, the first that does not decode.
    """
    mismatch = _TYPE_MISMATCH.search(message)
    if not mismatch and "Invalid protocol message" not in message:
        return None
    key, expected = mismatch.groups() if mismatch else (None, None)
    for path, index, data in records:
        found = _record_problem(data, key, expected)
        if found:
            problem, video_id = found
            return (f"{problem} file: {path} record: {index} "
                    f"video id: {video_id}")
    return None


def describe_parse_error(files, message, compression="auto"):
    """`locate_parse_error` over every good record of `files`, in order."""
    return locate_parse_error(message, (
        (path, index, data) for path in files
        for index, data in good_records(path, compression)))


def iterate(dataset, files, compression="auto"):
    """Iterate `dataset`; input errors come out as clear `InputError`s.

    A DataLossError becomes a CorruptRecordError naming file and record; a
    failed input check (parsing.check) loses TF's wrapping around its message;
    a record TF's parser refuses is found and named (`describe_parse_error`);
    a file TF may not open is named in one line.
    """
    try:
        yield from dataset
    except tf.errors.DataLossError as error:
        message = describe_corruption(files, compression) or str(error)
        raise CorruptRecordError(
            f"{message}{SKIP_HINT}") from error
    except (tf.errors.PermissionDeniedError, tf.errors.NotFoundError) as error:
        message = files_lib.unreadable(error.message)
        if not message:
            raise
        raise OSError(message) from error
    except tf.errors.InvalidArgumentError as error:
        found = _ASSERTION.search(error.message)
        if found:
            message = found.group(1).replace("] [", " ").strip("[]")
            message = message.replace("\\'", "'")
            raise (CorruptRecordError if message.startswith("corrupt record")
                   else InputError)(message) from error
        message = describe_parse_error(files, error.message, compression)
        if message is None:
            raise
        raise InputError(message) from error


def _file_dataset(path, compression):
    """(file, record index, serialized) of one file's records.

    Zipped rather than mapped: a map's function is instantiated once per
    file, which dominates reading where files hold few videos (measured:
    ~1.5x the reading CPU at 12 videos per file).
    """
    return tf.data.Dataset.zip((
        tf.data.Dataset.from_tensors(path).repeat(),
        tf.data.Dataset.range(tf.int64.max),
        tf.data.TFRecordDataset(path, compression_type=compression)))


def _good_records_dataset(files_and_compressions):
    """The checksum-verified records of the given (damaged) files, in order."""
    return tf.data.Dataset.from_generator(
        lambda: ((path, index, data)
                 for path, compression in files_and_compressions
                 for index, data in good_records(path, compression)),
        output_signature=(tf.TensorSpec([], tf.string),
                          tf.TensorSpec([], tf.int64),
                          tf.TensorSpec([], tf.string)))


def _framing_checked(path, compression):
    """`path`, once `past_the_end` has found nothing (checked as it is read)."""
    problem = tf.py_function(
        lambda p, c: past_the_end(p.numpy().decode(), c.numpy().decode()),
        [path, compression], tf.string)
    check = tf.debugging.Assert(tf.equal(problem, ""), [problem])
    with tf.control_dependencies([check]):
        return tf.identity(path), compression


def _interleaved(files, compressions, shuffle, seed, cycle_length):
    dataset = tf.data.Dataset.from_tensor_slices((files, compressions))
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed,
                                  reshuffle_each_iteration=True)
    return dataset.map(_framing_checked).interleave(
        _file_dataset, cycle_length=max(1, min(len(files), cycle_length)),
        num_parallel_calls=tf.data.AUTOTUNE)


def record_dataset(files, shuffle=False, seed=None, compression="auto",
                   skip_corrupt_records=False, cycle_length=8):
    """(file, record index, serialized) from `files`, interleaved in parallel.

    Auto-sharding across workers is by FILE: each worker reads whole files.
    With `skip_corrupt_records`, every file is scanned first; clean files are
    read at full speed, files with corrupt records through their good records
    only (then sharded by DATA: every worker reads everything and keeps its
    share), and the number skipped is logged.
    """
    compressions = [compression_of(f, compression) for f in files]
    if skip_corrupt_records:
        clean, damaged, skipped = [], [], 0
        for path, file_compression in zip(files, compressions):
            _, problems = scan_file(path, file_compression)
            for index, problem in problems:
                logging.warning("skipping %s record %d: %s", path, index,
                                problem)
            skipped += len(problems)
            (damaged if problems else clean).append((path, file_compression))
        logging.warning("skipped %d corrupt record(s) or file tail(s) in %d of "
                        "%d file(s)", skipped, len(damaged), len(files))
        parts = []
        if clean:
            parts.append(_interleaved(*map(list, zip(*clean)), shuffle, seed,
                                      cycle_length))
        if damaged or not parts:
            parts.append(_good_records_dataset(damaged))
        dataset = parts[0] if len(parts) == 1 else parts[0].concatenate(parts[1])
    else:
        damaged = []
        dataset = _interleaved(files, compressions, shuffle, seed, cycle_length)
    # The damaged files' good records come from Python, which tf.data cannot
    # shard by file ("unshardable source dataset"): then every worker reads
    # every file and keeps its share of the records.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA if damaged
        else tf.data.experimental.AutoShardPolicy.FILE)
    return dataset.with_options(options)
