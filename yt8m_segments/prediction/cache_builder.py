"""The inference command as a library, with plain arguments (never flags), so
that the command (yt8m_segments/inference.py, whose docstring describes the
format), tests and benchmarks share it: each input file's predictions as a
resumable part, the parts assembled into a probability cache, and the
submission written from a cache."""

import json
import os
import tempfile
import time

import numpy as np
from absl import logging

from yt8m_segments import locking
from yt8m_segments import precision
from yt8m_segments.atomic import atomic_path
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views
from yt8m_segments.postprocess import cache
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import refine_choice
from yt8m_segments.postprocess import submission
from yt8m_segments.prediction import predict
from yt8m_segments.training import run_artifacts

PARTS = "parts"
# Windows per video assumed when turning --batch_size (windows) into videos
# per batch for the per-video view: a 300-frame test video has 60.
WINDOWS_PER_VIDEO = 60
# Tests set this to False to force the flat windows (None: choose).
_WINDOWED = None


def videos_per_batch(batch_size):
    """Videos per per-video batch holding about `batch_size` real windows."""
    return max(1, batch_size // WINDOWS_PER_VIDEO)


def use_windowed(model, context_frames, windowed_option=None):
    """Whether to run `model` per video (models/windowed.py; the per-frame
    work of yt8m_segments/inference.py's docstring), logged."""
    from yt8m_segments.models import windowed

    if windowed_option is None:
        windowed_option = _WINDOWED
    if windowed_option is False:
        logging.info("flat windows (per-video path switched off)")
        return False
    if not context_frames:
        logging.info("flat windows: without context frames windows share no "
                     "frame")
        return False
    reason = windowed.why_not_windowed(model)
    if reason is not None:
        logging.info("flat windows of %d frames, per-frame work repeated: %s",
                     5 + 2 * context_frames, reason)
        return False
    logging.info("per-video windows: per-frame work once per video, each "
                 "%d-frame window pooled", 5 + 2 * context_frames)
    return True


class Progress:
    """Logs segments/s and an ETA from the input files done / total."""

    def __init__(self, total_files, done_files, every_n_batches=50,
                 clock=time.monotonic):
        self.total_files = total_files
        self.done_files = done_files
        self.files_this_run = 0
        self.segments = 0
        self.batches = 0
        self.every = max(1, every_n_batches)
        self.clock = clock
        self.start = clock()

    def rate(self):
        return self.segments / max(self.clock() - self.start, 1e-9)

    def eta_seconds(self):
        if not self.files_this_run:
            return None
        elapsed = self.clock() - self.start
        remaining = self.total_files - self.done_files
        return elapsed / self.files_this_run * remaining

    def line(self):
        eta = self.eta_seconds()
        eta_text = "?" if eta is None else f"{eta / 60:.1f} min"
        return (f"files {self.done_files}/{self.total_files}, "
                f"{self.segments:,} segments, {self.rate():,.0f} segments/s, "
                f"ETA {eta_text}")

    def batch(self, num_segments):
        self.segments += num_segments
        self.batches += 1
        if self.batches % self.every == 0:
            logging.info("%s", self.line())

    def file_done(self):
        self.done_files += 1
        self.files_this_run += 1
        logging.info("%s", self.line())


def shard_files(files, num_shards=1, shard_index=0):
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard_index={shard_index} is not in "
                         f"[0, --num_shards={num_shards})")
    chosen = list(files)[shard_index::num_shards]
    if not chosen:
        raise ValueError(f"shard {shard_index} of {num_shards} has no file "
                         f"among {len(files)}")
    return chosen


def part_path(cache_dir, input_file):
    return os.path.join(cache_dir, PARTS, os.path.basename(input_file) + ".npz")


def _part_meta(fingerprint, video_fingerprint, class_ids, video_class_ids,
               context_frames, video_max_frames, mixed_precision):
    # Float32 parts carry no precision key: those written before the option
    # stay valid.
    mixed = ({} if mixed_precision == precision.FLOAT32
             else {"mixed_precision": mixed_precision})
    return {**mixed,
            "fingerprint": fingerprint, "video_fingerprint": video_fingerprint,
            "class_ids": [int(c) for c in class_ids],
            "video_class_ids": (None if video_class_ids is None
                                else [int(c) for c in video_class_ids]),
            "context_frames": context_frames,
            "video_max_frames": video_max_frames if video_fingerprint else None}


def save_part(path, meta, segment_ids, segment_probs, video_ids=None,
              video_probs=None):
    """One input file's predictions, written atomically (temp + rename)."""
    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True)),
              "segment_ids": np.asarray(segment_ids, dtype=str),
              "segment_probs": np.asarray(segment_probs, dtype=np.float16)}
    if video_probs is not None:
        arrays["video_ids"] = np.asarray(video_ids, dtype=str)
        arrays["video_probs"] = np.asarray(video_probs, dtype=np.float16)
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as handle:  # zip needs a seekable local file
            np.savez(handle, **arrays)


def load_part(path):
    with np.load(path, allow_pickle=False) as part:
        return {key: part[key] for key in part.files}


def part_meta(path):
    with np.load(path, allow_pickle=False) as part:
        return json.loads(str(part["meta"]))


def _check_part(path, meta):
    found = part_meta(path)
    if found != meta:
        differ = sorted(k for k in set(found) | set(meta)
                        if found.get(k) != meta.get(k))
        raise ValueError(
            f"{path} was written by another model or setting ({', '.join(differ)} "
            "differ): remove its parts directory or use another --cache_dir")


def build_cache(cache_dir, run, class_ids, files, batch_size, context_frames=0,
                input_options=None, video_run=None, video_max_frames=records.MAX_FRAMES,
                num_classes=records.NUM_CLASSES, extra_meta=None,
                log_every_n_batches=50, mixed_precision=precision.FLOAT32,
                jit_compile=False):
    """Predict `files` into parts (skipping finished ones), assemble the cache;
    cache_dir is held throughout (locking.hold). The models run under the
    dtype policy `mixed_precision` (precision.py), compiled by XLA with
    `jit_compile`; a part written under another policy is refused.

    Returns the opened cache.ProbabilityCache.
    """
    with locking.hold(cache_dir, "probability cache"):
        input_options = input_options or {}
        names = [os.path.basename(f) for f in files]
        if len(set(names)) != len(names):
            raise ValueError("input files share a basename, so their parts would "
                             "collide: " + ", ".join(sorted(
                                 n for n in set(names) if names.count(n) > 1)[:5]))
        os.makedirs(os.path.join(cache_dir, PARTS), exist_ok=True)
        fingerprint = cache.run_fingerprint(run)
        video_fingerprint = cache.run_fingerprint(video_run) if video_run else None
        video_class_ids = video_run.class_ids if video_run else None
        meta = _part_meta(fingerprint, video_fingerprint, class_ids, video_class_ids,
                          context_frames, video_max_frames, mixed_precision)

        todo = []
        for path in files:
            part = part_path(cache_dir, path)
            if os.path.exists(part):
                _check_part(part, meta)
            else:
                todo.append(path)
        if len(todo) < len(files):
            logging.info("resuming: %d of %d input files already predicted",
                         len(files) - len(todo), len(files))
        progress = Progress(len(files), len(files) - len(todo), log_every_n_batches)
        if todo:
            model = run.model_in(mixed_precision)
            per_video = (not run.reads_mean_frame
                         and use_windowed(model, context_frames))
            if per_video:
                segments = predict.WindowedPredictor(
                    model, run.columns_for(class_ids), jit_compile=jit_compile)
            else:
                segments = predict.Predictor(
                    model, run.columns_for(class_ids),
                    mean_frame=run.reads_mean_frame, jit_compile=jit_compile)
            videos = (predict.Predictor(video_run.model_in(mixed_precision),
                                        id_key="id",
                                        mean_frame=video_run.reads_mean_frame,
                                        jit_compile=jit_compile)
                      if video_run else None)
        for path in todo:
            if per_video:
                dataset = views.test_segment_dataset(
                    path, run.feature_spec, videos_per_batch(batch_size),
                    context_frames=context_frames, per_video=True, files=[path],
                    quantized=True, **input_options)
            else:
                dataset = views.test_segment_dataset(
                    path, run.feature_spec, batch_size,
                    context_frames=context_frames, files=[path], quantized=True,
                    **input_options)
            segment_ids, segment_probs, _ = segments.predict(
                dataset, [path], on_batch=progress.batch, allow_empty=True)
            video_ids = video_probs = None
            if videos is not None:
                dataset = views.video_dataset(
                    path, video_run.feature_spec, num_classes, video_max_frames,
                    batch_size, files=[path], quantized=True, **input_options)
                video_ids, video_probs, _ = videos.predict(dataset, [path],
                                                           allow_empty=True)
            save_part(part_path(cache_dir, path), meta, segment_ids, segment_probs,
                      video_ids, video_probs)
            progress.file_done()
        return assemble_cache(cache_dir, files, meta, {
            "train_dir": os.path.abspath(run.train_dir),
            "video_train_dir": (os.path.abspath(video_run.train_dir)
                                if video_run else None),
            "input_files": list(files), **(extra_meta or {})})


def assemble_cache(cache_dir, files, part_meta_dict, extra_meta):
    """The parts of `files` (in order) into the cache in `cache_dir`."""
    parts = [part_path(cache_dir, f) for f in files]
    num_segments = num_videos = 0
    file_of = {}  # video id -> the input file that holds it
    for path, part in zip(files, parts):
        with np.load(part, allow_pickle=False) as data:
            ids = data["segment_ids"]
            num_segments += len(ids)
            # (np.char.rpartition fails on an empty array)
            videos = (np.unique(np.char.rpartition(ids, ":")[:, 0]).tolist()
                      if len(ids) else [])
            if part_meta_dict["video_fingerprint"]:
                num_videos += len(data["video_ids"])
        for video_id in videos:
            if file_of.setdefault(video_id, path) != path:
                raise reader.InputError(
                    f"video id {video_id} appears in two input files: "
                    f"{file_of[video_id]} and {path}")
    if not num_segments:
        raise ValueError("the input holds no segment to predict: "
                         f"{reader.describe_files(files)}")
    has_videos = bool(part_meta_dict["video_fingerprint"])
    with cache.CacheWriter(cache_dir, num_segments, part_meta_dict["class_ids"],
                           num_videos if has_videos else None,
                           part_meta_dict["video_class_ids"]) as writer:
        for part in parts:
            data = load_part(part)
            writer.write_segments(data["segment_ids"].tolist(), data["segment_probs"])
            if has_videos:
                writer.write_videos(data["video_ids"].tolist(), data["video_probs"])
        meta = {key: part_meta_dict[key] for key in (
            "fingerprint", "video_fingerprint", "context_frames",
            "video_max_frames")}
        writer.commit({**meta, **extra_meta})
    logging.info("cache of %d segments x %d classes%s in %s", num_segments,
                 len(part_meta_dict["class_ids"]),
                 f", {num_videos} videos" if has_videos else "", cache_dir)
    return cache.ProbabilityCache.open(cache_dir)


def infer(train_dir, input_data_pattern, output_file, segment_max_pred,
          batch_size, segment_labels_file=None, context_frames=None,
          input_options=None, cache_dir=None, video_train_dir=None,
          num_shards=1, shard_index=0, refine_options=None,
          video_max_frames=records.MAX_FRAMES, num_classes=records.NUM_CLASSES,
          log_every_n_batches=50, held_out=None,
          mixed_precision=precision.FLOAT32, jit_compile=False):
    """Predict every test window into a cache; write the submission from it.

    `context_frames` defaults to the run's own (what it was fine-tuned with);
    `held_out`: see write_from_cache; `mixed_precision`, `jit_compile`: see
    build_cache. Returns the cache's [segments,
    classes] shape.
    """
    if output_file and num_shards > 1:
        raise ValueError("a shard cannot write the submission: merge the shard "
                         "caches (--merge_caches) and write it from the merge")
    run = run_artifacts.Run(train_dir)
    class_ids = run.segment_class_ids(segment_labels_file)
    files = shard_files(views.list_files(input_data_pattern), num_shards,
                        shard_index)
    video_run = run_artifacts.Run(video_train_dir) if video_train_dir else None
    context_frames = run.context_frames(context_frames)
    with tempfile.TemporaryDirectory(prefix="yt8m_cache_") as tmp:
        opened = build_cache(
            cache_dir or tmp, run, class_ids, files, batch_size, context_frames,
            input_options, video_run, video_max_frames, num_classes,
            {"num_shards": num_shards, "shard_index": shard_index},
            log_every_n_batches, mixed_precision, jit_compile)
        logging.info("predicted %d segments x %d classes", *opened.shape)
        if output_file:
            write_from_cache(opened, output_file, segment_max_pred,
                             refine_options, held_out)
        return opened.shape


def write_from_cache(opened, output_file, segment_max_pred, refine_options=None,
                     held_out=None):
    """The submission of `opened`, refined by `refine_options`.

    --refine=auto first chooses the refinement on `held_out` (an opened
    cache of held-out rated videos, their rated pairs); any refinement
    checks the video model of `opened` first (a WARNING if uninformative).
    """
    start = time.monotonic()
    refine_options = refine_options or refine.RefineOptions()
    if refine_options.mode == refine_choice.AUTO:
        if held_out is None:
            raise ValueError("--refine=auto needs a held-out cache and its "
                             "rated pairs")
        refine_options = refine_choice.choose_for(opened, segment_max_pred,
                                                  *held_out)
    if refine_options.active and opened.has_videos():
        refine_choice.check_video_model(opened)
    submission.write_submission_from_cache(output_file, opened, segment_max_pred,
                                           refine_options)
    logging.info("wrote %s (refine=%s %s) in %.1f s", output_file,
                 refine_options.mode, refine_options.parameters,
                 time.monotonic() - start)
