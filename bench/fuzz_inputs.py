r"""Fuzz the record readers of the commands with damaged inputs.

  python bench/fuzz_inputs.py --cases=200 --seed=0 [--work_dir=D]

Why: every input error is meant to surface as one line, `error: ...`, naming
the file (and the record where one record is at fault), exit 1; a traceback,
a crash, or a wrong input read as if it were right is a bug. This bench
generates a small dataset with the library, trains a tiny model in-process,
then runs the commands in-process (`cli.run_in_process`, output captured) on
seeded mutations of the test and validate records: the same seed gives the
same cases, case i is the same whatever --cases says, and the kinds cycle.

Each run is one of:
- clean_error: exit 1 and exactly one `error: ...` line on stderr naming the
  file, and the record index where the fault is one record's.
- skipped: with --skip_corrupt_records, exit 0, a count > 0 of skipped records
  logged, and the result of the surviving records (below).
- accepted: exit 0 on input the command may read, with the right result.
- failure: anything else: a traceback, an exception other than SystemExit,
  exit 2 (a data problem is no usage error), an error line naming no file or
  not the faulty record, exit 0 on wrong input, a wrong result, a run longer
  than --time_limit.

What each kind must give ("right result" of inference: every class row of
the submission lists exactly the 5-frame windows of the videos that should
be read, or `--segment_max_pred` of them where there are more; the files hold
<= 50 windows so every window is listed and the check is exact; of eval: a
`MAP@50 <v>` line, 0 <= v <= 1):
- flip, truncate, length_field, length_crc, data_crc, length_recrc (framing:
  every byte of a TFRecord is under a checksum, so any change must be caught;
  length_recrc changes a length and recomputes its checksum): error naming the
  first damaged record. A truncation at a record boundary leaves a valid,
  shorter file: accepted, its records only. With --skip_corrupt_records:
  skipped, the output being the windows of the records a reader can still
  frame (a bad data checksum loses that record, a bad header or a truncation
  everything from there on, since the rest cannot be framed).
- huge_length (bench only: out of process, under an 8 GiB address-space
  limit, since TensorFlow's reader allocates a record's stated length and
  crashed on these before reader.past_the_end): a length of 2^34..2^62
  with its checksum recomputed; as the framing kinds.
- gzip_truncate, gzip_flip (GZIP-compressed files, read with the default
  --compression=auto): an error naming the file; a flip the format does not
  cover (the header's time stamp) may be accepted with the full result, as
  may a cut inside the 8-byte trailer, which leaves the data whole. With
  --skip_corrupt_records: skipped or clean_error, any windows output being
  among the file's.
- missing_id, empty_id, frame_counts, zero_frames, frame_bytes: error naming
  the record, in every command: the frames or the id cannot be read.
- duplicate_id (a record given another's video id): inference and Beam
  refuse it naming the file and the video (each would rank the video's
  windows twice); eval refuses it where a rated window repeats;
  fine-tuning may train on it.
- labels_float (a label list of floats), label_negative, label_huge: eval
  reads labels, so an error naming the record. Inference reads no label (a
  test record has none): accepted with the unchanged result, or, for
  float video labels, which the parser may refuse, an error naming the record.
- segment_lengths, segment_off_grid (a start not a multiple of 5),
  segment_score (not 0 or 1): validate records only; eval must refuse them
  naming the record (a rating of a window no submission can name, or a score
  read as a positive or as unrated, would change MAP silently); inference
  reads no segment field: accepted, unchanged.
- empty_file: a valid TFRecord file of no record: accepted with an empty
  result, or an error naming the file.
- random_bytes, text_file (not TFRecord at all): error naming record 0; with
  --skip_corrupt_records, skipped (nothing left) or an error naming the file.
- video_flip, video_nan, video_size, video_label (a 2018 video-level
  record file: bytes flipped; a NaN or infinite mean_rgb/mean_audio value;
  a feature cut short; a label outside the 100-class vocabulary): eval
  --eval_metric=gap --frame_features=false must name the damaged record
  (a flip the framing survives, none: accepted with a GAP in [0, 1]).
- long_video (bench only: slow): one record of 10,000 frames (the format has
  at most 300): accepted with --segment_max_pred of its and the others'
  windows, or an error naming the record.

eval and fine-tuning (train.py --stage=finetune, one epoch: every record
is read) run on the validate-derived cases and must give what eval must;
the Beam pipeline (beam_inference.py on the exported model, its cache
holding every window, no top-K) must give what inference must; inference
with --skip_corrupt_records runs on the framing, GZIP, random_bytes and
text_file ones. A fine-tuning run is right if it saved its run and its last
loss is finite.
"""

import argparse
import collections
import dataclasses
import gzip
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import google_crc32c  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m_segments import cli  # noqa: E402
from yt8m_segments.data import parsing  # noqa: E402
from yt8m_segments.data import records  # noqa: E402
from yt8m_segments.data import synthetic  # noqa: E402

SEGMENT_MAX_PRED = 50
FRAMING = ("flip", "truncate", "length_field", "length_crc", "data_crc",
           "length_recrc")
GZIP = ("gzip_truncate", "gzip_flip")
SEMANTIC = ("missing_id", "empty_id", "duplicate_id", "labels_float",
            "label_negative", "label_huge", "segment_lengths",
            "segment_off_grid", "segment_score", "frame_counts", "zero_frames",
            "frame_bytes")
FILE = ("empty_file", "random_bytes", "text_file")
# 2018 video-level records (tf.train.Example of feature means), read by eval
# --eval_metric=gap --frame_features=false.
VIDEO_LEVEL = ("video_flip", "video_nan", "video_size", "video_label")
# Too slow for CI (a 10,000-frame record; a process per run).
BENCH_ONLY = ("long_video", "huge_length")
CI_KINDS = FRAMING + GZIP + SEMANTIC + FILE + VIDEO_LEVEL
KINDS = CI_KINDS + BENCH_ONLY
SEGMENT_KINDS = ("segment_lengths", "segment_off_grid", "segment_score")
# Run with --skip_corrupt_records too.
SKIP_KINDS = FRAMING + GZIP + ("random_bytes", "text_file", "huge_length")
OUTCOMES = ("clean_error", "skipped", "accepted", "failure")
ADDRESS_SPACE_LIMIT = 8 << 30
_MASK_DELTA = 0xA282EAD8
_HEADER, _FOOTER = 12, 4


@dataclasses.dataclass
class World:
    """The generated files, the tiny model, and what the pristine records hold."""
    dir: str
    finetune_dir: str
    pretrain_dir: str
    saved_model_dir: str
    payloads: dict        # split -> [serialized SequenceExample]
    windows: dict         # split -> [[segment ids] per record]
    num_classes: int      # class rows of a submission


@dataclasses.dataclass
class Expect:
    """What one run must give. `verdict`: error, accept or either; `record`:
    the record an error must name (None: the file suffices); `segments`: the
    windows an accepted inference lists (module docstring), `exact=False`
    where any of them will do."""
    verdict: str
    record: int | None = None
    segments: frozenset = frozenset()
    exact: bool = True


@dataclasses.dataclass
class Case:
    index: int
    kind: str
    split: str
    path: str
    note: str
    runs: dict            # command (COMMANDS) -> Expect


@dataclasses.dataclass
class Result:
    """One command's run: exit code (None when an exception escaped or a
    signal ended it), captured output, seconds, and what it produced."""
    code: int | None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    escaped: str = ""
    output: object = None


@dataclasses.dataclass
class Outcome:
    case: Case
    command: str
    outcome: str
    message: str


def masked_crc(data):
    """The TFRecord checksum (CRC32C, masked)."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(payload):
    """One TFRecord: length, its checksum, the data, its checksum."""
    header = struct.pack("<Q", len(payload))
    return (header + struct.pack("<I", masked_crc(header)) + payload
            + struct.pack("<I", masked_crc(payload)))


def decode(payload):
    """A frame-level record as `records.make_frame_example`'s arguments."""
    example = tf.train.SequenceExample.FromString(payload)
    context = example.context.feature
    video = {"video_id": context["id"].bytes_list.value[0].decode(),
             "labels": list(context["labels"].int64_list.value), "features": {}}
    for name, size in zip(records.DEFAULT_FEATURE_NAMES,
                          records.DEFAULT_FEATURE_SIZES):
        rows = [f.bytes_list.value[0]
                for f in example.feature_lists.feature_list[name].feature]
        video["features"][name] = np.frombuffer(b"".join(rows), np.uint8).reshape(
            -1, size)
    if "segment_start_times" in context:
        video["segment_start_times"] = list(
            context["segment_start_times"].int64_list.value)
        video["segment_labels"] = list(context["segment_labels"].int64_list.value)
        video["segment_scores"] = list(context["segment_scores"].float_list.value)
    return video


def window_ids(video_id, num_frames):
    """The segment ids inference gives a video: one per 5 frames, from 0."""
    return [f"{video_id}:{start}"
            for start in range(0, num_frames, records.FRAMES_PER_SEGMENT)]


def train_args(stage, data, train_dir, *extra):
    """A tiny model; one pass over the data, so a fault anywhere is met."""
    return [f"--stage={stage}", "--model=AveragePooling",
            "--video_level_classifier_model=MoE", "--num_classes=100",
            "--batch_size=8", "--num_epochs=1", "--log_every_steps=1",
            f"--train_data_pattern={data}", f"--train_dir={train_dir}", *extra]


def build_world(work_dir, seed=0):
    """Generate the dataset, pretrain and fine-tune a tiny model, once, and
    check that inference on the pristine test file lists every window."""
    data = os.path.join(work_dir, "data")
    synthetic.generate(data, 16, 8, 8, seed=seed, num_classes=100,
                       num_active_classes=6, num_segment_classes=3,
                       min_frames=10, max_frames=25, num_files_per_split=1,
                       video_level=True)
    pretrain, finetune = (os.path.join(work_dir, n) for n in ("pretrain", "finetune"))
    with cli.captured_output():
        cli.run_in_process("yt8m_segments.train", train_args(
            "pretrain", f"{data}/train-*.tfrecord", pretrain))
        cli.run_in_process("yt8m_segments.train", train_args(
            "finetune", f"{data}/validate-*.tfrecord", finetune,
            f"--pretrain_dir={pretrain}"))
        cli.run_in_process("yt8m_segments.export", [
            f"--train_dir={finetune}",
            f"--export_dir={os.path.join(work_dir, 'export')}"])
    payloads, windows = {}, {}
    for split in ("test", "validate"):
        path = os.path.join(data, f"{split}-00000-of-00001.tfrecord")
        raw = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        with open(path, "rb") as handle:  # the framing the mutations assume
            assert handle.read() == b"".join(map(frame, raw))
        # Map fields serialize in an order that changes from process to
        # process; canonical bytes keep a seed's cases the same byte for byte.
        payloads[split] = [tf.train.SequenceExample.FromString(r).SerializeToString(
            deterministic=True) for r in raw]
        videos = map(decode, payloads[split])
        windows[split] = [window_ids(v["video_id"], len(v["features"]["rgb"]))
                          for v in videos]
    path = os.path.join(data, "train_video-00000-of-00001.tfrecord")
    payloads["train_video"] = [
        tf.train.Example.FromString(r.numpy()).SerializeToString(
            deterministic=True) for r in tf.data.TFRecordDataset(path)]
    world = World(data, finetune, pretrain,
                  os.path.join(work_dir, "export", "1"), payloads, windows, 0)
    baseline = run_command(world, "inference", os.path.join(data, "test-*"),
                           os.path.join(work_dir, "baseline.csv"))
    assert baseline.code == 0 and baseline.output, baseline.stderr[-2000:]
    world.num_classes = len(baseline.output)
    everything = set(sum(windows["test"], []))
    assert all(row == everything for row in baseline.output), baseline.output
    return world


# command -> (module, what it reads)
COMMANDS = {"inference": "inference", "skip": "inference", "eval": "eval",
            "finetune": "train", "beam": "beam_inference", "gap": "eval"}


def command_args(world, command, path, output):
    """The flags of `command` on the case file `path`, writing to `output`
    (a file for inference, a directory for finetune and beam)."""
    if command == "finetune":
        return train_args("finetune", path, output,
                          f"--pretrain_dir={world.pretrain_dir}")
    if command == "beam":
        return [f"--saved_model_dir={world.saved_model_dir}",
                f"--input_data_pattern={path}", f"--cache_dir={output}"]
    if command == "gap":
        return [f"--train_dir={world.pretrain_dir}", "--eval_metric=gap",
                "--frame_features=false", "--num_classes=100",
                f"--eval_data_pattern={path}"]
    args = [f"--train_dir={world.finetune_dir}",
            f"--segment_max_pred={SEGMENT_MAX_PRED}"]
    if command == "eval":
        return [*args, f"--eval_data_pattern={path}"]
    args += [f"--input_data_pattern={path}", f"--output_file={output}"]
    return [*args, "--skip_corrupt_records"] if command == "skip" else args


def run_command(world, command, path, output, in_process=True,
                time_limit=60.0):
    """Run `command` (COMMANDS) on `path`, timed, its output read
    (`read_output`) and removed. Out of process, a run is killed at twice
    `time_limit`; in process, it cannot be."""
    module = "yt8m_segments." + COMMANDS[command]
    args = command_args(world, command, path, output)
    _remove(output)
    start = time.monotonic()
    if in_process:
        result = _in_process(module, args)
    else:
        result = _in_child(module, args, 2 * time_limit)
    result.seconds = time.monotonic() - start
    result.output = read_output(command, result, output)
    _remove(output)
    return result


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _in_process(module, args):
    code, escaped = 0, ""
    with cli.captured_output() as (stdout, stderr):
        try:
            cli.run_in_process(module, args)
        except SystemExit as done:  # sys.exit(None) is 0, sys.exit("text") 1
            code = (done.code or 0) if isinstance(done.code, (int, type(None))) else 1
        except Exception as error:  # noqa: BLE001 - what escapes is the finding
            code, escaped = None, f"{type(error).__name__}: {cli.one_line(error)}"
    return Result(code, stdout.getvalue(), stderr.getvalue(), escaped=escaped)


def _in_child(module, args, timeout):
    """A run in its own process, its address space capped: a reader that
    allocates what a length field says, or crashes, takes only it down."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT,) * 2)
    try:
        done = subprocess.run([sys.executable, "-m", module, *args], text=True,
                              capture_output=True, check=False, preexec_fn=limit,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return Result(None, escaped=f"killed after {timeout:.0f} s")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return Result(None, done.stdout, done.stderr, escaped=f"killed by {name}")
    return Result(done.returncode, done.stdout, done.stderr)


def read_output(command, result, output):
    """eval: its MAP (None without a MAP line); inference: one set of
    segment ids per class row of the submission; beam: the cache's segment
    ids, as one row; finetune: its final loss (None without a saved run)."""
    if command in ("eval", "gap"):
        metric = "GAP" if command == "gap" else "MAP"
        found = re.search(rf"^{metric}@\d+ (\S+)$", result.stdout, re.M)
        return float(found.group(1)) if found else None
    if result.code != 0:
        return None
    if command == "finetune":
        found = re.findall(r"step \d+: loss ([^\s,]+)", result.stderr)
        saved = os.path.exists(os.path.join(output, "model.keras"))
        return float(found[-1]) if saved and found else None
    if command == "beam":
        ids = os.path.join(output, "segment_ids.txt")
        if not os.path.exists(ids):
            return None
        with open(ids) as handle:
            return [set(handle.read().split())]
    if not os.path.exists(output):
        return None
    with open(output) as handle:
        lines = handle.read().splitlines()[1:]
    return [set(line.partition(",")[2].split()) for line in lines]


_RECORD = re.compile(r"record:? \W*(\d+)")
_SKIPPED = re.compile(r"skipped (\d+) corrupt record")


def classify(result, expect, path, num_classes, time_limit, command="inference"):
    """(outcome, message) of one `command` run (COMMANDS) against what it
    must give (module docstring)."""
    skip = command == "skip"
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("error: ")]
    message = errors[0] if errors else ""
    if result.escaped:
        return "failure", "escaped: " + result.escaped
    if "Traceback (most recent call last)" in result.stderr:
        return "failure", "traceback: " + result.stderr.strip().splitlines()[-1]
    if result.seconds > time_limit:
        return "failure", f"took {result.seconds:.0f} s (limit {time_limit:.0f})"
    if result.code == 1:
        if len(errors) != 1:
            return "failure", f"{len(errors)} error lines: {message}"
        if path not in message:
            return "failure", f"names no file: {message}"
        if expect.verdict == "accept":
            return "failure", f"refused a readable input: {message}"
        if (expect.record is not None
                and str(expect.record) not in _RECORD.findall(message)):
            return "failure", f"does not name record {expect.record}: {message}"
        return "clean_error", message
    if result.code != 0:
        return "failure", f"exit {result.code}: {message or result.stderr[-300:]}"
    found = _SKIPPED.search(result.stderr)
    if expect.verdict == "error" and not (skip and found and int(found.group(1))):
        return "failure", ("exit 0 on damaged input, nothing skipped" if skip
                           else "exit 0 on wrong input")
    wrong = wrong_result(result.output, expect, num_classes, command)
    if wrong:
        return "failure", f"exit 0, {wrong}"
    if found and int(found.group(1)):
        return "skipped", found.group(0)
    if isinstance(result.output, float):
        what = {"finetune": "loss", "gap": "GAP"}.get(command, "MAP")
        return "accepted", f"{what} {result.output}"
    return "accepted", f"{len(expect.segments)} windows"


def wrong_result(output, expect, num_classes, command="inference"):
    """Why an exit-0 run's output (`read_output`) is wrong, or ''."""
    if output is None:
        return "no result (no MAP line, loss or saved run, or no output)"
    if command == "finetune":
        return "" if np.isfinite(output) and output >= 0 else f"loss {output}"
    if isinstance(output, float):
        return "" if 0 <= output <= 1 else f"MAP {output}"
    if command == "beam":  # the cache holds every window, no top-K
        num_classes, want = 1, len(expect.segments)
    else:
        want = min(len(expect.segments), SEGMENT_MAX_PRED)
    if len(output) != num_classes:
        return f"{len(output)} class rows, not {num_classes}"
    for row in output:
        if not row <= expect.segments:
            return ("windows not in the file's readable records: "
                    f"{sorted(row - expect.segments)[:3]}")
        if expect.exact and len(row) != want:
            return (f"{len(row)} windows, not {want}: missing "
                    f"{sorted(expect.segments - row)[:3]}")
    return ""


def _boundaries(payloads):
    """Start of every record in the framed file, then the file's length."""
    return np.cumsum([0] + [len(p) + _HEADER + _FOOTER for p in payloads])


def _survivors(num_records, header_damaged, data_damaged):
    """Records a framing walk still reads: a bad data checksum loses its
    record, a bad header the rest of the file."""
    kept = []
    for record in range(num_records):
        if record in header_damaged:
            break
        if record not in data_damaged:
            kept.append(record)
    return kept


def _framing(kind, rng, payloads):
    """(bytes, note, first damaged record or None, surviving records)."""
    data = bytearray(b"".join(map(frame, payloads)))
    starts = _boundaries(payloads)
    record = int(rng.integers(len(payloads)))
    start = int(starts[record])
    if kind == "flip":
        where = np.sort(rng.choice(len(data), int(rng.integers(1, 4)),
                                   replace=False))
        flipped = np.frombuffer(data, np.uint8).copy()
        flipped[where] ^= rng.integers(1, 256, len(where)).astype(np.uint8)
        data = flipped.tobytes()
        hit = np.searchsorted(starts, where, side="right") - 1
        in_header = where - starts[hit] < _HEADER
        header, body = set(hit[in_header].tolist()), set(hit[~in_header].tolist())
        return (data, f"bytes {where.tolist()} flipped",
                int(hit.min()), _survivors(len(payloads), header, body))
    if kind == "truncate":
        at_boundary = rng.random() < 0.25
        cut = start if at_boundary else int(rng.integers(len(data)))
        record = int(np.searchsorted(starts, cut, side="right")) - 1
        damaged = None if cut == starts[record] else record
        return (bytes(data[:cut]), f"cut at byte {cut} of {len(data)}",
                damaged, list(range(record)))
    if kind == "data_crc":
        end = int(starts[record + 1])
        data[end - _FOOTER:end] = struct.pack(
            "<I", struct.unpack("<I", data[end - _FOOTER:end])[0]
            ^ int(rng.integers(1, 1 << 32)))
        survivors = [r for r in range(len(payloads)) if r != record]
        return bytes(data), f"record {record} data checksum", record, survivors
    (length,) = struct.unpack("<Q", data[start:start + 8])
    if kind == "length_crc":
        field = slice(start + 8, start + _HEADER)
        value = struct.unpack("<I", data[field])[0] ^ int(rng.integers(1, 1 << 32))
        data[field] = struct.pack("<I", value)
        note = f"record {record} length checksum"
    else:
        new_length = {
            "length_field": length ^ (1 << int(rng.integers(40))),
            "length_recrc": [int(rng.integers(length)),
                             length + int(rng.integers(1, 4 * len(data))),
                             2 ** 64 - 1][rng.integers(3)],
            "huge_length": 2 ** int(rng.integers(34, 63)),
        }[kind]
        header = struct.pack("<Q", new_length)
        crc = (struct.pack("<I", masked_crc(header)) if kind != "length_field"
               else data[start + 8:start + _HEADER])
        data[start:start + _HEADER] = header + crc
        note = f"record {record} length {length} -> {new_length}"
    return bytes(data), note, record, list(range(record))


def _gzip(kind, rng, payloads):
    """(bytes, note, whether an error is a must) of a GZIP-compressed file."""
    data = bytearray(gzip.compress(b"".join(map(frame, payloads)), mtime=0))
    if kind == "gzip_truncate":
        cut = int(rng.integers(1, len(data)))
        # Cut inside the trailer (CRC, size): every record is still whole.
        return (bytes(data[:cut]), f"cut at byte {cut} of {len(data)} (GZIP)",
                cut < len(data) - 8)
    where = int(rng.integers(len(data)))
    data[where] ^= int(rng.integers(1, 256))
    # Bytes 4-9 (time stamp, extra flags, OS) are covered by no checksum.
    return bytes(data), f"byte {where} of {len(data)} flipped (GZIP)", not 4 <= where < 10


def _context_as_floats(example, name):
    values = list(example.context.feature[name].int64_list.value) or [1, 2]
    example.context.feature[name].CopyFrom(
        tf.train.Feature(float_list=tf.train.FloatList(value=values)))


def _semantic(kind, rng, video):
    """The mutated record (a SequenceExample) and a note; `video` as
    `decode` gives it, changed in place."""
    rated = "segment_start_times" in video
    fields = ["labels", "segment_labels"] if rated else ["labels"]
    features = video["features"]
    num_frames = len(features["rgb"])
    name = str(rng.choice(records.DEFAULT_FEATURE_NAMES))
    note = ""
    if kind == "empty_id":
        video["video_id"] = ""
    elif kind in ("label_negative", "label_huge"):
        field = str(rng.choice(fields))
        values = video[field] or [0]
        value = (-int(rng.integers(1, 2 ** 31)) if kind == "label_negative"
                 else int(rng.choice([records.NUM_CLASSES, 2 ** 31, 2 ** 62])))
        values[int(rng.integers(len(values)))] = value
        video[field], note = values, f"{field} {values}"
    elif kind == "segment_lengths":
        field = str(rng.choice(list(parsing.SEGMENT_CONTEXT)))
        values = video[field]
        video[field] = values[:-1] if rng.random() < 0.5 else values + values[:1]
        note = f"{field} of {len(video[field])}, not {len(values)}"
    elif kind == "segment_off_grid":
        starts = video["segment_start_times"]
        position = int(rng.integers(len(starts)))
        starts[position] = int(rng.choice([t for t in range(num_frames) if t % 5]))
        note = f"segment_start_times {starts} of {num_frames} frames"
    elif kind == "segment_score":
        scores = video["segment_scores"]
        scores[int(rng.integers(len(scores)))] = float(
            rng.choice([0.5, 2.0, -1.0, np.nan, np.inf]))
        note = f"segment_scores {scores}"
    elif kind == "frame_counts":
        frames = features[name]
        features[name] = (frames[:-1] if rng.random() < 0.5
                          else np.concatenate([frames, frames[:1]]))
        note = f"{len(features[name])} '{name}' frames, {num_frames} of the other"
    elif kind == "zero_frames":
        video["features"] = {n: f[:0] for n, f in features.items()}
    elif kind == "long_video":
        frames = rng.integers(0, 256, (10_000, sum(records.DEFAULT_FEATURE_SIZES)),
                              np.uint8)
        video["features"] = dict(zip(records.DEFAULT_FEATURE_NAMES, np.split(
            frames, np.cumsum(records.DEFAULT_FEATURE_SIZES)[:-1], axis=1)))
        note = "10,000 frames"
    example = records.make_frame_example(**video)
    if kind == "missing_id":
        del example.context.feature["id"]
    elif kind == "labels_float":
        field = str(rng.choice(fields))
        _context_as_floats(example, field)
        note = f"{field} as floats"
    elif kind == "frame_bytes":
        row = int(rng.integers(num_frames))
        size = dict(zip(records.DEFAULT_FEATURE_NAMES,
                        records.DEFAULT_FEATURE_SIZES))[name]
        length = size + int(rng.choice([-1, 1, -size, size]))
        example.feature_lists.feature_list[name].feature[row].bytes_list.value[0] = (
            bytes(length))
        note = f"'{name}' frame {row} of {length} bytes"
    return example, note


def make_case(world, kind, index, seed, case_dir):
    """Case `index` of `kind`: its file written to `case_dir`, and what each
    run must give. Seeded by (seed, index) alone."""
    rng = np.random.default_rng([seed, index])
    if kind in VIDEO_LEVEL:
        return _video_level_case(world, kind, index, rng, case_dir)
    split = ("validate" if kind in SEGMENT_KINDS
             else str(rng.choice(["test", "validate"])))
    payloads, windows = list(world.payloads[split]), world.windows[split]
    everything = frozenset(sum(windows, []))

    def readable(kept):
        return frozenset(w for r in kept for w in windows[r])

    runs, note = {}, kind
    if kind in FRAMING or kind == "huge_length":
        data, note, damaged, kept = _framing(kind, rng, payloads)
        # A cut at the first record boundary leaves a valid file of no
        # record: as empty_file.
        verdict = ("error" if damaged is not None
                   else "accept" if kept else "either")
        runs["inference"] = runs["eval"] = Expect(verdict, damaged, readable(kept))
        # Nothing left to read: an error naming the file will do.
        runs["skip"] = Expect("accept" if kept else "either", None, readable(kept))
    elif kind in GZIP:
        data, note, must_fail = _gzip(kind, rng, payloads)
        runs["inference"] = runs["eval"] = Expect(
            "error" if must_fail else "either", None, everything)
        runs["skip"] = Expect("either", None, everything, exact=False)
    elif kind in FILE:
        if kind == "empty_file":
            data = b""
        elif kind == "random_bytes":
            data = rng.bytes(int(rng.integers(1, 4096)))
            if data.startswith(b"\x1f\x8b"):  # that is gzip_flip's
                data = b"\0" + data[1:]
        else:
            name = str(rng.choice(["test_ground_truth.csv", "segment_label_ids.csv",
                                   "vocabulary.csv"]))
            with open(os.path.join(world.dir, name), "rb") as handle:
                data, note = handle.read(), f"{name} as records"
        if kind == "empty_file":
            runs["inference"] = runs["eval"] = Expect("either")
        else:
            runs["inference"] = runs["eval"] = Expect("error", 0)
            runs["skip"] = Expect("either")
    elif kind == "duplicate_id":
        record, other = (int(r) for r in rng.choice(len(payloads), 2,
                                                    replace=False))
        video = decode(payloads[record])
        video["video_id"] = decode(payloads[other])["video_id"]
        payloads[record] = records.make_frame_example(**video).SerializeToString(
            deterministic=True)
        data = b"".join(map(frame, payloads))
        note = f"record {record}: the id of record {other}"
        runs["inference"] = Expect("error")
        # eval refuses a rated segment counted twice; two records rating
        # different windows of one id change no count. Training on a video
        # twice weighs it twice; nothing to refuse.
        runs["eval"] = runs["finetune"] = Expect("either")
    else:
        record = int(rng.integers(len(payloads)))
        video = decode(payloads[record])
        example, detail = _semantic(kind, rng, video)
        payloads[record] = example.SerializeToString(deterministic=True)
        data = b"".join(map(frame, payloads))
        note = f"record {record}: {detail or kind}"
        runs["eval"] = Expect("either" if kind == "long_video" else "error", record)
        if kind == "long_video":
            long = window_ids(video["video_id"], len(video["features"]["rgb"]))
            runs["inference"] = Expect("either", record, frozenset(
                long).union(*(windows[:record] + windows[record + 1:])))
        elif kind in ("label_negative", "label_huge", *SEGMENT_KINDS) or (
                kind == "labels_float" and "segment" in detail):
            runs["inference"] = Expect("accept", None, everything)
        elif kind == "labels_float":
            runs["inference"] = Expect("either", record, everything)
        else:
            runs["inference"] = Expect("error", record)
    if "inference" in runs:
        runs["beam"] = runs["inference"]
    if split == "validate":
        runs.setdefault("finetune", runs["eval"])
    else:
        runs.pop("eval")
        runs.pop("finetune", None)
    if kind not in SKIP_KINDS:
        runs.pop("skip", None)
    path = os.path.join(case_dir, f"case{index:04d}-{kind}-{split}.tfrecord")
    with open(path, "wb") as handle:
        handle.write(data)
    return Case(index, kind, split, path, note, runs)


def _video_level_case(world, kind, index, rng, case_dir):
    """A mutated 2018 video-level file; `gap` must name the damaged record."""
    payloads = list(world.payloads["train_video"])
    if kind == "video_flip":
        data, note, damaged, _ = _framing("flip", rng, payloads)
    else:
        damaged = int(rng.integers(len(payloads)))
        example = tf.train.Example.FromString(payloads[damaged])
        feature = example.features.feature
        name = str(rng.choice(["mean_rgb", "mean_audio"]))
        values = feature[name].float_list.value
        if kind == "video_nan":
            values[int(rng.integers(len(values)))] = float(
                rng.choice([np.nan, np.inf, -np.inf]))
        elif kind == "video_size":
            del values[int(rng.integers(len(values))):]
        else:
            feature["labels"].int64_list.value.append(
                int(rng.choice([-1, 100, 2 ** 40])))
            name = "labels"
        payloads[damaged] = example.SerializeToString(deterministic=True)
        data = b"".join(map(frame, payloads))
        note = f"record {damaged}: {kind} in {name}"
    path = os.path.join(case_dir, f"case{index:04d}-{kind}-train_video.tfrecord")
    with open(path, "wb") as handle:
        handle.write(data)
    return Case(index, kind, "train_video", path, note,
                {"gap": Expect("accept" if damaged is None else "error",
                               damaged)})


def run_case(world, case, time_limit):
    """Every run of `case`, classified; the case's file is removed unless a
    run failed (it is then kept to reproduce the failure)."""
    outcomes = []
    for command, expect in case.runs.items():
        result = run_command(world, command, case.path,
                             f"{case.path}.{command}.out",
                             case.kind != "huge_length", time_limit)
        outcome, message = classify(result, expect, case.path, world.num_classes,
                                    time_limit, command)
        outcomes.append(Outcome(case, command, outcome, message))
    if all(o.outcome != "failure" for o in outcomes):
        os.remove(case.path)
    return outcomes


def fuzz(world, num_cases, seed, case_dir, kinds=KINDS, time_limit=60.0,
         commands=tuple(COMMANDS), shard=(0, 1), progress=None):
    """Outcomes of cases 0..num_cases-1 (those i with i % n == k of `shard`
    (k, n)), the kinds cycling, each case run through those of `commands` it
    has runs for. `progress(line)` hears each failure as it happens and a
    count every 100 cases, so a stopped run still tells what it found."""
    os.makedirs(case_dir, exist_ok=True)
    outcomes = []
    for index in range(shard[0], num_cases, shard[1]):
        case = make_case(world, kinds[index % len(kinds)], index, seed, case_dir)
        case.runs = {c: e for c, e in case.runs.items() if c in commands}
        ran = run_case(world, case, time_limit)
        outcomes.extend(ran)
        if progress:
            for o in ran:
                if o.outcome == "failure":
                    progress(f"case {index} {o.case.kind} [{o.command}] "
                             f"failure: {o.message[:200]}")
            if index // shard[1] % 100 == 99:
                failures = sum(o.outcome == "failure" for o in outcomes)
                progress(f"case {index}: {len(outcomes)} runs, "
                         f"{failures} failures")
    return outcomes


def report(outcomes, show_paths=True):
    """The table per kind (outcomes count runs), the failures grouped by
    message, and one example per (kind, outcome); `show_paths`: name the
    kept files of failing cases."""
    kinds = list(dict.fromkeys(o.case.kind for o in outcomes))
    lines = [f"{'kind':<18}{'cases':>6}{'runs':>6}" + "".join(
        f"{name:>13}" for name in OUTCOMES)]
    for kind in [*kinds, "total"]:
        mine = [o for o in outcomes if kind in ("total", o.case.kind)]
        counts = collections.Counter(o.outcome for o in mine)
        lines.append(f"{kind:<18}{len({o.case.index for o in mine}):>6}"
                     f"{len(mine):>6}" + "".join(f"{counts[n]:>13}" for n in OUTCOMES))
    failures = [o for o in outcomes if o.outcome == "failure"]
    lines += ["", f"FAILURES: {len(failures)} of {len(outcomes)} runs"]
    grouped = collections.defaultdict(list)
    for o in failures:
        pattern = re.sub(r"0x[0-9a-f]+|\d+", "N",
                         o.message.replace(o.case.path, "<file>"))
        grouped[(o.case.kind, o.command, pattern)].append(o)
    for (kind, command, _), group in grouped.items():
        first = group[0]
        where = f"; {first.case.path}" if show_paths else ""
        lines.append(f"  {len(group):>3} x {kind} [{command}] e.g. case "
                     f"{first.case.index} ({first.case.note}{where}): "
                     f"{first.message[:300]}")
    lines += ["", "examples (kind, outcome, [command] case: message):"]
    seen = set()
    for o in outcomes:
        if (o.case.kind, o.outcome) not in seen:
            seen.add((o.case.kind, o.outcome))
            lines.append(f"  {o.case.kind:<18}{o.outcome:<12}[{o.command}] "
                         f"{o.case.note}: {o.message[:200]}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200,
                        help="Mutated files to run (the kinds cycle).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the mutations (the dataset's is 0).")
    parser.add_argument("--work_dir", default=None,
                        help="Keep the data, model and failing cases here "
                             "(default: a temporary directory, removed).")
    parser.add_argument("--time_limit", type=float, default=60.0,
                        help="Seconds a run may take.")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help="Comma-separated commands to run (finetune and "
                             "beam cost ~3x the others).")
    parser.add_argument("--shard", default="0/1",
                        help="K/N: only cases i with i %% N == K (run N "
                             "processes to share the cases).")
    args = parser.parse_args(argv)
    shard = tuple(int(n) for n in args.shard.split("/"))
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="fuzz_inputs_")
    start = time.monotonic()
    try:
        world = build_world(work_dir)
        outcomes = fuzz(world, args.cases, args.seed,
                        os.path.join(work_dir, "cases"), time_limit=args.time_limit,
                        commands=args.commands.split(","), shard=shard,
                        progress=lambda line: print(line, file=sys.stderr,
                                                    flush=True))
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(report(outcomes, show_paths=bool(args.work_dir)))
    failures = sum(o.outcome == "failure" for o in outcomes)
    print(f"\n{args.cases} cases (shard {args.shard}), seed {args.seed}, "
          f"{args.commands}, "
          f"{time.monotonic() - start:.0f} s; total failures: {failures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
