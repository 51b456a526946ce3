"""Batch inference on Apache Beam, the library under beam_inference.py: the
exported SavedModel over test records into inference.py's fp16 probability
caches (the pipeline is described in yt8m_segments/beam_inference.py).

It defines no flags: Beam workers import this module to unpickle the DoFns
and the model handler by reference (a command run as __main__ could not be
imported there), and tests and benches call it directly, beside commands
whose flags would clash.
"""

import hashlib
import logging
import os
import re
import shutil
import tempfile

import numpy as np

try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import ModelHandler
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.options.pipeline_options import StandardOptions
except ImportError as _error:  # pragma: no cover - the extra is optional
    raise ImportError("yt8m_segments.prediction.beam needs Apache Beam: pip "
                      "install 'yt8m_segments[beam]' (apache-beam[tfrecord])"
                      ) from _error

from yt8m_segments.postprocess import cache
from yt8m_segments.data import reader

SHARDS = "shards"
SIGNATURE = "serving_default"
# The served graph's input check (parsing.assert_records) as it fails.
_ASSERTION = re.compile(
    r"assertion failed: \[(?P<problem>.*?)\] \[file:\] \[(?P<files>.*?)\] "
    r"\[record:\] \[(?P<records>.*?)\] \[video id:\] \[(?P<ids>.*?)\]")


# ---------------------------------------------------------------- launcher

def list_files(pattern):
    """Sorted files matching a (comma-separated) glob, through Beam's
    FileSystems (so gs:// etc. work); a clear error if none do."""
    files = set()
    for part in pattern.split(","):
        part = part.strip()
        if not part:
            continue
        for result in FileSystems.match([part]):
            files.update(m.path for m in result.metadata_list)
    if not files:
        raise FileNotFoundError(f"no file matches the data pattern '{pattern}'")
    return sorted(files)


def savedmodel_fingerprint(export_dir):
    """sha256 of every file of the SavedModel (relative names and bytes)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    names = []
    for root, _, files in tf.io.gfile.walk(export_dir):
        for name in files:
            full = os.path.join(root, name)
            names.append((os.path.relpath(full, export_dir), full))
    if not names:
        raise FileNotFoundError(f"no SavedModel at {export_dir}")
    for relative, full in sorted(names):
        if relative == "fingerprint.pb":  # TF's own, derived from the rest
            continue
        digest.update(relative.encode() + b"\0")
        with tf.io.gfile.GFile(full, "rb") as handle:
            while True:
                chunk = handle.read(1 << 22)
                if not chunk:
                    break
                digest.update(chunk)
    return digest.hexdigest()


def serving_outputs(export_dir):
    """Output names of the export's serving_default (read from the proto,
    without loading the model); a clear error if it is not ours."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{export_dir} holds no saved_model.pb: pass the version "
            "directory of an export (E/<version>)")
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as handle:
        proto.ParseFromString(handle.read())
    signatures = proto.meta_graphs[0].signature_def
    if SIGNATURE not in signatures or "examples" not in signatures[SIGNATURE].inputs:
        raise ValueError(f"{export_dir} has no {SIGNATURE} signature taking "
                         "`examples` (write it with yt8m_segments.export)")
    outputs = set(signatures[SIGNATURE].outputs)
    missing = {"segment_id", "segment_video_index", "probabilities",
               "video_id", "class_ids"} - outputs
    if missing:
        raise ValueError(f"{export_dir}: {SIGNATURE} lacks {sorted(missing)}")
    return outputs


def shard_path(cache_dir, shard_index, num_shards):
    if num_shards == 1:
        return cache_dir
    return os.path.join(cache_dir, SHARDS,
                        f"shard-{shard_index:05d}-of-{num_shards:05d}")


LOCAL_RUNNER = "FnApiRunner"


# ---------------------------------------------------------------- reading

def read_records(path, skip_corrupt_records=False):
    """Yields (record index, serialized) of a TFRecord file, CRC-checked.

    A corrupt record raises reader.CorruptRecordError with inference.py's
    message (file and record named); with `skip_corrupt_records` a record
    failing its data checksum is skipped and a broken framing ends the file,
    each logged.
    """
    for index, data, text in reader.walk_records(path):
        if text is None:
            yield index, data
        elif skip_corrupt_records:
            logging.warning("skipping %s record %d: %s", path, index, text)
        else:
            raise reader.CorruptRecordError(
                f"corrupt record in {path}, record {index}: {text}"
                f"{reader.SKIP_HINT}")


class ReadRecords(beam.DoFn):
    """(file index, path) -> (file index, path, record index, serialized)."""

    def __init__(self, skip_corrupt_records=False):
        self._skip = skip_corrupt_records

    def process(self, element):
        file_index, path = element
        for index, data in read_records(path, self._skip):
            yield file_index, path, index, data


# ---------------------------------------------------------------- inference

def input_error(error, batch):
    """The served graph's input check (which names the request position)
    as reader.InputError naming file and record, as inference.py does."""
    found = _ASSERTION.search(getattr(error, "message", str(error)))
    if not found:
        return None

    def real(position, what):
        try:
            return batch[int(position)][what]
        except (ValueError, IndexError):
            return position  # summarized away ("...")

    positions = found.group("records").split()
    files = " ".join(str(real(p, 1)) for p in positions)
    records = " ".join(str(real(p, 2)) for p in positions)
    message = (f"{found.group('problem')} file: {files} record: {records} "
               f"video id: {found.group('ids')}")
    return reader.InputError(message.replace("\\'", "'"))


class ServingModelHandler(ModelHandler):
    """RunInference over the exported SavedModel's `serving_default`.

    Elements are (file index, path, record index, serialized); a batch of
    them makes one call. Each batch yields ONE result: a dict of numpy arrays
    (fp16 probabilities) for its videos and windows, which keeps per-element
    overhead off the 60-windows-per-video fan-out.
    """

    def __init__(self, export_dir, max_batch_size=32, min_batch_size=1,
                 max_batch_duration_secs=None):
        self._export_dir = export_dir
        self._max_batch_size = max_batch_size
        self._min_batch_size = min_batch_size
        self._max_batch_duration_secs = max_batch_duration_secs

    def load_model(self):
        import tensorflow as tf

        module = tf.saved_model.load(self._export_dir)
        logging.info("loaded %s (pid %d)", self._export_dir, os.getpid())
        return module

    def run_inference(self, batch, model, inference_args=None):
        import tensorflow as tf

        batch = list(batch)
        examples = tf.constant([element[3] for element in batch])
        try:
            out = model.signatures[SIGNATURE](examples=examples)
        except tf.errors.InvalidArgumentError as error:
            converted = input_error(error, batch)
            if converted is None:
                message = reader.locate_parse_error(
                    error.message, (element[1:] for element in batch))
                if message is None:
                    raise
                converted = reader.InputError(message)
            raise converted from None

        def strings(name):
            return out[name].numpy().astype(str)

        result = {
            "file_index": np.array([e[0] for e in batch], np.int64),
            "record": np.array([e[2] for e in batch], np.int64),
            "video_id": strings("video_id"),
            "segment_video_index": out["segment_video_index"].numpy(),
            "segment_id": strings("segment_id"),
            "probabilities": out["probabilities"].numpy().astype(cache.DTYPE),
            "class_ids": out["class_ids"].numpy(),
        }
        if "video_probabilities" in out:
            result["video_probabilities"] = (
                out["video_probabilities"].numpy().astype(cache.DTYPE))
            result["video_class_ids"] = out["video_class_ids"].numpy()
        return [result]

    def get_num_bytes(self, batch):
        return sum(len(element[3]) for element in batch)

    def batch_elements_kwargs(self):
        kwargs = {"min_batch_size": self._min_batch_size,
                  "max_batch_size": self._max_batch_size}
        if self._max_batch_duration_secs:
            kwargs["max_batch_duration_secs"] = self._max_batch_duration_secs
        return kwargs

    def get_metrics_namespace(self):
        return "yt8m_segments"


def split_by_shard(result, num_shards):
    """One batch result -> (shard, the part of it in that shard)."""
    shards = result["file_index"] % num_shards
    for shard in np.unique(shards):
        videos = np.flatnonzero(shards == shard)
        rows = np.isin(result["segment_video_index"], videos)
        part = {key: result[key] for key in ("class_ids", "video_class_ids")
                if key in result}
        for key in ("file_index", "record", "video_id", "video_probabilities"):
            if key in result:
                part[key] = result[key][videos]
        part["segment_id"] = result["segment_id"][rows]
        part["probabilities"] = result["probabilities"][rows]
        yield int(shard), part


# ---------------------------------------------------------------- writing

class WriteShard(beam.DoFn):
    """(shard, [batch parts]) -> the path of the shard's committed cache.

    Two passes over the grouped parts (Beam's grouped values re-iterate):
    count, then stream rows through cache.CacheWriter.
    """

    def __init__(self, cache_dir, num_shards, files, meta):
        self._cache_dir = cache_dir
        self._num_shards = num_shards
        self._files = files
        self._meta = meta

    def process(self, element):
        shard, parts = element
        num_segments = num_videos = 0
        class_ids = video_class_ids = None
        segment_ids = []
        for part in parts:
            num_segments += len(part["segment_id"])
            segment_ids.append(part["segment_id"])
            num_videos += len(part["video_id"])
            class_ids = part["class_ids"]
            video_class_ids = part.get("video_class_ids")
        reader.check_unique_segments(
            np.concatenate(segment_ids) if segment_ids else [],
            self._files[shard::self._num_shards])
        has_videos = video_class_ids is not None
        path = shard_path(self._cache_dir, shard, self._num_shards)
        remote = is_remote(path)
        if remote:  # cache.py writes local files: write here, then upload
            local_tmp = tempfile.mkdtemp(prefix="yt8m_shard_")
            target, path = path, os.path.join(local_tmp, "cache")
        with cache.CacheWriter(path, num_segments, class_ids.tolist(),
                               num_videos if has_videos else None,
                               video_class_ids.tolist() if has_videos else None
                               ) as writer:
            for part in parts:
                if len(part["segment_id"]):
                    writer.write_segments(part["segment_id"].tolist(),
                                          part["probabilities"])
                if has_videos and len(part["video_id"]):
                    writer.write_videos(part["video_id"].tolist(),
                                        part["video_probabilities"])
            meta = dict(self._meta)
            if not has_videos:
                meta["video_fingerprint"] = None
            meta.update({
                "input_files": self._files[shard::self._num_shards],
                "num_shards": self._num_shards, "shard_index": shard})
            writer.commit(meta)
        if remote:
            publish(path, target)
            shutil.rmtree(local_tmp, ignore_errors=True)
            path = target
        logging.info("shard %d: %d segments, %d videos in %s", shard,
                     num_segments, num_videos, path)
        yield path


def is_remote(path):
    return "://" in path


def publish(local_dir, target):
    """Copy a committed cache directory to `target` (any Beam file system),
    meta.json last, so a reader never sees a half-copied cache as finished."""
    names = sorted(n for n in os.listdir(local_dir)  # files only (no parts/)
                   if os.path.isfile(os.path.join(local_dir, n)))
    if cache.META not in names:
        raise ValueError(f"{local_dir} is not a committed cache")
    if not FileSystems.exists(target):
        FileSystems.mkdirs(target)
    meta_target = FileSystems.join(target, cache.META)
    if FileSystems.exists(meta_target):
        FileSystems.delete([meta_target])  # de-commit an older cache first
    for name in [n for n in names if n != cache.META] + [cache.META]:
        with open(os.path.join(local_dir, name), "rb") as source, \
                FileSystems.create(FileSystems.join(target, name)) as sink:
            shutil.copyfileobj(source, sink, 1 << 22)


def merge_shards(paths, cache_dir):
    paths = sorted(paths)
    if not paths:
        raise ValueError("the input holds no segment to predict")
    cache.merge_caches(paths, cache_dir)
    logging.info("merged %d shard caches into %s", len(paths), cache_dir)
    return cache_dir


# ---------------------------------------------------------------- pipeline

def build_pipeline(pipeline, export_dir, input_data_pattern, cache_dir,
                   num_shards=1, batch_size=32, merge=True,
                   skip_corrupt_records=False):
    """Adds the inference steps to `pipeline`; returns the PCollection of
    written cache paths (the merged one, or the shards)."""
    if num_shards < 1:
        raise ValueError(f"--num_shards={num_shards} must be at least 1")
    export_dir = export_dir.rstrip("/")
    if not is_remote(cache_dir):
        cache_dir = os.path.abspath(cache_dir)
    outputs = serving_outputs(export_dir)
    files = list_files(input_data_pattern)
    names = [os.path.basename(f) for f in files]
    if len(set(names)) != len(names):
        logging.warning("input files share a basename; ids stay distinct only "
                        "if their videos do")
    if num_shards > len(files):
        raise ValueError(f"--num_shards={num_shards} is more than the "
                         f"{len(files)} input file(s): a shard would be empty")
    fingerprint = savedmodel_fingerprint(export_dir)
    meta = {"fingerprint": fingerprint,
            "video_fingerprint": (fingerprint if "video_probabilities" in outputs
                                  else None),
            "export_dir": export_dir if "://" in export_dir
            else os.path.abspath(export_dir),
            "context_frames": None, "video_max_frames": None,
            "runner": "apache_beam"}
    logging.info("%d input file(s), %d shard(s), SavedModel %s", len(files),
                 num_shards, fingerprint[:12])
    handler = ServingModelHandler(export_dir, max_batch_size=batch_size)
    parts = (
        pipeline
        | "Files" >> beam.Create(list(enumerate(files)))
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadRecords" >> beam.ParDo(ReadRecords(skip_corrupt_records))
        | "RunInference" >> RunInference(handler)
        | "SplitByShard" >> beam.FlatMap(split_by_shard, num_shards))
    paths = (parts
             | "GroupByShard" >> beam.GroupByKey()
             | "WriteShards" >> beam.ParDo(WriteShard(cache_dir, num_shards,
                                                      files, meta)))
    if num_shards > 1 and merge and is_remote(cache_dir):
        logging.warning("--cache_dir %s is not a local path: the shards stay "
                        "unmerged; copy them to one machine and run inference "
                        "--merge_caches", cache_dir)
    elif num_shards > 1 and merge:
        paths = (paths
                 | "AllShards" >> beam.combiners.ToList()
                 | "MergeShards" >> beam.Map(merge_shards, cache_dir))
    return paths


def run_pipeline(export_dir, input_data_pattern, cache_dir, num_shards=1,
                 batch_size=32, merge=True, skip_corrupt_records=False,
                 pipeline_args=()):
    """Runs the pipeline of build_pipeline to completion, with Beam pipeline
    options parsed by Beam from `pipeline_args` (--runner=... ...); returns
    one line saying what it wrote: the cache's path and shape, the shards'
    directory (unmerged), or `cache_dir` when it is a URL."""
    options = PipelineOptions(list(pipeline_args))
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        # Beam's default DirectRunner first tries its Prism runner, which it
        # downloads from GitHub at run time; FnApiRunner is the local runner
        # DirectRunner falls back to (--direct_num_workers and
        # --direct_running_mode work the same).
        standard.runner = LOCAL_RUNNER
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, export_dir, input_data_pattern, cache_dir,
                       num_shards, batch_size, merge, skip_corrupt_records)
    if is_remote(cache_dir):
        return cache_dir
    if num_shards > 1 and not merge:
        return os.path.join(os.path.abspath(cache_dir), SHARDS)
    if not os.path.exists(os.path.join(cache_dir, cache.META)):
        # No record reached a shard: the pipeline wrote nothing.
        raise ValueError("the input holds no segment to predict: "
                         f"{reader.describe_files(list_files(input_data_pattern))}")
    opened = cache.ProbabilityCache.open(os.path.abspath(cache_dir))
    return (f"{opened.path}: {opened.shape[0]} segments x "
            f"{opened.shape[1]} classes")
