"""Bad input gets a clear error naming the file and record, and loses nothing."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow as tf

from conftest import frames_with_values
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

SPEC = FeatureSpec()


def good_video(video_id, num_frames=10, **extra):
    return dict(video_id=video_id, labels=[1], features=frames_with_values(num_frames),
                **extra)


def read_all(dataset, files):
    return [batch for batch in reader.iterate(dataset, files)]


def corrupt(path, offset_fraction=0.5, truncate=False):
    data = bytearray(open(path, "rb").read())
    if truncate:
        data = data[:int(len(data) * offset_fraction)]
    else:
        data[int(len(data) * offset_fraction)] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("truncate", [False, True])
def test_corrupt_record_fails_naming_file_and_record(write_videos, truncate):
    path = write_videos([good_video(f"v{i:03d}") for i in range(3)])
    corrupt(path, 0.5, truncate)  # inside record 1 of 3
    dataset = views.test_segment_dataset(path, SPEC, 8)
    with pytest.raises(reader.CorruptRecordError,
                       match=rf"{path}, record 1: .*skip_corrupt_records"):
        read_all(dataset, [path])


def test_skip_corrupt_records_keeps_every_good_record(write_videos, caplog):
    path = write_videos([good_video(f"v{i:03d}") for i in range(4)])
    clean = write_videos([good_video("cln0")], name="clean.tfrecord")
    corrupt(path, 0.4)  # record 1's data
    dataset = views.test_segment_dataset(f"{path},{clean}", SPEC, 100,
                                         skip_corrupt_records=True)
    ids = {s.decode().split(":")[0] for b in read_all(dataset, [path, clean])
           for s in b["segment_id"].numpy()}
    assert ids == {"v000", "v002", "v003", "cln0"}  # only v001 is lost
    assert "skipped 1 corrupt record" in caplog.text


def test_gzip_is_detected_and_read(tmp_path):
    path = str(tmp_path / "videos.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(records.make_frame_example(**good_video("gzip"))
                     .SerializeToString())
    assert reader.compression_of(path) == "GZIP"
    batch = read_all(views.test_segment_dataset(path, SPEC, 8), [path])[0]
    assert batch["segment_id"].numpy()[0] == b"gzip:0"


@pytest.mark.parametrize("video,message", [
    (dict(video_id="noau", labels=[1],
          features={"rgb": frames_with_values(4)["rgb"]}),
     "feature list 'audio' is missing"),
    (dict(video_id="zero", labels=[1],
          features={"rgb": np.zeros((0, 1024), np.uint8),
                    "audio": np.zeros((0, 128), np.uint8)}),
     "no frames"),
    (dict(video_id="size", labels=[1],
          features={"rgb": np.zeros((3, 1000), np.uint8),
                    "audio": np.zeros((3, 128), np.uint8)}),
     "a 'rgb' frame is not 1024 bytes"),
])
def test_bad_frames_name_file_record_and_video(write_videos, video, message):
    path = write_videos([good_video("fine"), video])
    dataset = views.test_segment_dataset(path, SPEC, 8)
    with pytest.raises(reader.InputError,
                       match=rf"{message}.*file: \S+ record: 1 video id: "
                             rf"{video['video_id']}"):
        read_all(dataset, [path])


@pytest.mark.parametrize("starts,scores,message", [
    ([0, 10], [1.0, 0.0], "segment start at or past the end"),
    ([0, 2], [1.0, 0.0], "segment start not a multiple of 5 frames"),
    ([0, 5], [1.0, 0.5], "segment score not 0 or 1"),
    ([0, 5], [float("nan"), 0.0], "segment score not 0 or 1"),
])
def test_bad_segment_fields_name_the_record(write_videos, starts, scores, message):
    """Off the 5-frame grid or scored other than 0/1, a rating would change
    MAP silently (found by bench/fuzz_inputs.py)."""
    path = write_videos([good_video("vid0", 10, segment_start_times=starts,
                                    segment_labels=[1, 1],
                                    segment_scores=scores)])
    dataset = views.rated_segment_dataset(path, SPEC, [1], 8,
                                          vocabulary_size=5)
    with pytest.raises(reader.InputError,
                       match=rf"{message}.*record: 0 video id: vid0"):
        read_all(dataset, [path])


def test_rated_label_not_a_segment_class(write_videos):
    path = write_videos([good_video("vid0", 10, segment_start_times=[0],
                                    segment_labels=[3], segment_scores=[1.0])])
    dataset = views.rated_segment_dataset(path, SPEC, [1, 2], 8,
                                          vocabulary_size=5)
    with pytest.raises(reader.InputError, match="a segment label is not a segment class.*video id: vid0"):
        read_all(dataset, [path])


@pytest.mark.parametrize("label", [-1, 5])
def test_segment_label_outside_vocabulary_names_the_record(write_videos, label):
    """Found by bench/fuzz_inputs.py: it reached tf.gather unchecked."""
    path = write_videos([good_video("fine", 10, segment_start_times=[0],
                                    segment_labels=[1], segment_scores=[1.0]),
                         good_video("vid1", 10, segment_start_times=[0, 5],
                                    segment_labels=[1, label],
                                    segment_scores=[1.0, 0.0])])
    dataset = views.rated_segment_dataset(path, SPEC, [1], 8,
                                          vocabulary_size=5)
    with pytest.raises(reader.InputError,
                       match=r"segment label id outside the 5-class vocabulary"
                             r".*record: 1 video id: vid1"):
        read_all(dataset, [path])


def test_segment_classes_read_from_records_check_the_vocabulary(write_videos):
    """Fine-tuning without --segment_labels_file reads its classes from the
    records: a label outside the vocabulary gave "the model has no output
    for classes [...]", naming no file (found by the fuzz bench)."""
    from yt8m_segments.data import classes
    path = write_videos([good_video("fine", 10, segment_start_times=[0],
                                    segment_labels=[1], segment_scores=[1.0]),
                         good_video("vid1", 10, segment_start_times=[0],
                                    segment_labels=[7], segment_scores=[1.0])])
    assert classes.segment_label_ids_from_records(path, 8) == [1, 7]
    with pytest.raises(reader.InputError,
                       match=r"segment label id outside the 5-class vocabulary"
                             r".*record: 1 video id: vid1"):
        classes.segment_label_ids_from_records(path, 5)


def float_labels(path, record):
    """Rewrites `path` with the labels of record `record` as floats."""
    examples = [tf.train.SequenceExample.FromString(r.numpy())
                for r in tf.data.TFRecordDataset(path)]
    labels = examples[record].context.feature["labels"]
    values = list(labels.int64_list.value)
    labels.float_list.value.extend(values)
    records.write_records(path, examples)


@pytest.mark.parametrize("make_dataset", [
    lambda path: views.test_segment_dataset(path, SPEC, 8),
    lambda path: views.video_dataset(path, SPEC, 5, 300, 8),
], ids=["segments", "videos"])
def test_feature_of_another_type_names_the_record(write_videos, make_dataset):
    """Found by bench/fuzz_inputs.py: TF's parser names neither file nor
    record, so the reader finds the record (float labels here)."""
    path = write_videos([good_video(f"v{i}") for i in range(3)])
    float_labels(path, 2)
    with pytest.raises(reader.InputError,
                       match=rf"feature 'labels' holds float values, not int64 "
                             rf"file: {path} record: 2 video id: v2"):
        read_all(make_dataset(path), [path])


def test_undecodable_record_is_named(write_videos):
    path = write_videos([good_video("v0")])
    good = next(iter(tf.data.TFRecordDataset(path))).numpy()
    with tf.io.TFRecordWriter(path) as writer:  # valid framing, no protobuf
        writer.write(good)
        writer.write(b"\xff\xff\xff")
    with pytest.raises(reader.InputError,
                       match=rf"not a valid .*protobuf file: {path} record: 1"):
        read_all(views.test_segment_dataset(path, SPEC, 8), [path])


def test_scan_file_reports_each_problem(write_videos):
    path = write_videos([good_video(f"v{i}") for i in range(5)])
    assert reader.scan_file(path) == (5, [])
    corrupt(path, 0.5)
    good, problems = reader.scan_file(path)
    assert good == 4 and problems == [(2, "data checksum mismatch")]


def test_framing_the_scan_cannot_read_is_a_problem_not_a_crash(write_videos, tmp_path):
    """A length no record reaches (its checksum right: 2^64 - 1 used to
    escape as a TypeError, 2^34 to crash the process) and a damaged GZIP
    stream (EOFError, BadGzipFile escaped) are problems at their record."""
    path = write_videos([good_video(f"v{i}", 5) for i in range(2)])
    raw = open(path, "rb").read()
    (length,) = struct.unpack("<Q", raw[:8])
    second = 12 + length + 4
    with open(tmp_path / "huge.tfrecord", "wb") as handle:
        handle.write(with_length(raw, second, 2**64 - 1))
    _, problems = reader.scan_file(str(tmp_path / "huge.tfrecord"))
    assert problems == [(1, f"record length {2**64 - 1} is past any record's; "
                            "the rest of the file cannot be framed")]
    with open(tmp_path / "cut.tfrecord.gz", "wb") as handle:
        handle.write(gzip.compress(raw)[:-20])
    good, problems = reader.scan_file(str(tmp_path / "cut.tfrecord.gz"), "GZIP")
    assert len(problems) == 1 and problems[0][1].startswith("damaged GZIP stream")


def with_length(raw, record_offset, length):
    header = struct.pack("<Q", length)
    return (raw[:record_offset] + header
            + struct.pack("<I", reader._masked_crc(header))
            + raw[record_offset + 12:])


@pytest.mark.parametrize("length", [2**40, 2**62])
def test_length_past_the_end_is_refused_before_tensorflow_reads_it(
        write_videos, length):
    """TF's reader allocates a record's stated length first: 2^40 with a
    valid checksum crashed the process with SIGSEGV (found by the fuzz bench)."""
    path = write_videos([good_video(f"v{i}", 5) for i in range(3)])
    raw = open(path, "rb").read()
    second = 12 + struct.unpack("<Q", raw[:8])[0] + 4
    open(path, "wb").write(with_length(raw, second, length))
    assert reader.past_the_end(path, "").startswith(
        f"corrupt record in {path}, record 1: record length {length} runs past")
    with pytest.raises(reader.CorruptRecordError,
                       match=rf"{path}, record 1: .*skip_corrupt_records"):
        read_all(views.test_segment_dataset(path, SPEC, 8), [path])
    assert reader.past_the_end(write_videos([good_video("ok")], "ok"), "") == ""


def test_a_file_shorter_than_a_header_is_corrupt_not_empty(tmp_path):
    """TensorFlow reads a file of under 12 bytes as holding no record (found
    by the fuzz bench: random bytes gave 'the input holds no segment')."""
    path = str(tmp_path / "short.tfrecord")
    open(path, "wb").write(b"\x07" * 7)
    with pytest.raises(reader.CorruptRecordError, match=(
            rf"corrupt record in {path}, record 0: truncated file \(partial "
            r"header\) \(pass --skip_corrupt_records")):
        read_all(views.test_segment_dataset(path, SPEC, 8), [path])
