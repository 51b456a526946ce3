"""Probability caches: fp16 model outputs on disk, the input of selection,
refinement, ensembles, stackers and evaluation.

A cache is a directory:

  segment_probs.npy     float16 [N, C] (a plain .npy: np.load(mmap_mode="r"))
  segment_ids.txt       N lines `<video id>:<start frame>`, row order
  class_ids.json        [C] ints: the class of each column
  video_probs.npy       optional float16 [V, Cv], whole-video probabilities
  video_ids.txt         optional, V lines
  video_class_ids.json  optional [Cv] ints
  meta.json             model fingerprint, train_dir, input files,
                        context_frames, created time, counts; written LAST

Writes de-commit any older cache in the directory (remove its meta.json),
write every file as `<name>.tmp-<pid>`, rename them into place, and write
meta.json (the commit marker) last, so a killed write never leaves a
directory that `ProbabilityCache.open` accepts. Arrays
are written by streaming row blocks into the file behind an
`np.lib.format.open_memmap` header, so neither writing nor merging holds a
whole matrix in memory.
"""

import contextlib
import datetime
import functools
import hashlib
import json
import os

import numpy as np

from yt8m_segments import atomic
from yt8m_segments import locking

SEGMENT_PROBS = "segment_probs.npy"
SEGMENT_IDS = "segment_ids.txt"
CLASS_IDS = "class_ids.json"
VIDEO_PROBS = "video_probs.npy"
VIDEO_IDS = "video_ids.txt"
VIDEO_CLASS_IDS = "video_class_ids.json"
META = "meta.json"
FORMAT_VERSION = 1
DTYPE = np.float16

# Rows per streamed block: 65,536 x 1000 fp16 = 131 MB.
BLOCK_ROWS = 1 << 16


def model_fingerprint(model, config=None):
    """sha256 of a Keras model's weights (names, shapes, bytes) and `config`."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        digest.update(f"{variable.path}:{value.dtype}:{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def run_fingerprint(run):
    """Fingerprint of a run_artifacts.Run: its weights and run_config.json."""
    return model_fingerprint(run.model, run.config)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- .npy files

class NpyRowWriter:
    """Writes a 2-D .npy file row block by row block, in order.

    The header comes from np.lib.format.open_memmap (so the file is exactly
    what np.load(mmap_mode="r") expects); the data go through a plain file
    handle, so the written pages never count in this process's memory.
    """

    def __init__(self, path, shape, dtype=DTYPE):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        header = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype,
                                           shape=self.shape)
        offset = header.offset
        del header
        self._handle = open(path, "r+b")
        self._handle.seek(offset)
        self.rows_written = 0

    def write(self, rows):
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.shape[1]:
            raise ValueError(f"{self.path}: rows of shape {rows.shape} for a "
                             f"matrix of shape {self.shape}")
        if self.rows_written + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: more than {self.shape[0]} rows")
        self._handle.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows_written += len(rows)

    def close(self):
        self._handle.close()
        if self.rows_written != self.shape[0]:
            raise ValueError(f"{self.path}: {self.rows_written} rows written of "
                             f"{self.shape[0]}")


class NpyReader:
    """Row and column blocks of a 2-D .npy file read with plain file reads.

    A memmap would do the same, but every page it touches counts in the
    process's resident memory; file reads leave them to the page cache.
    """

    def __init__(self, path):
        self.path = path
        array = np.load(path, mmap_mode="r")
        if array.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array, got {array.shape}")
        self.shape, self.dtype, self.offset = array.shape, array.dtype, array.offset
        if array.dtype.hasobject or not array.flags.c_contiguous:
            raise ValueError(f"{path}: not a C-ordered numeric array")
        del array

    def rows(self, start, stop, handle=None):
        """[stop - start, C] rows as a fresh array."""
        own = handle is None
        handle = handle or open(self.path, "rb")
        try:
            row_bytes = self.shape[1] * self.dtype.itemsize
            handle.seek(self.offset + start * row_bytes)
            count = (stop - start) * self.shape[1]
            data = np.fromfile(handle, dtype=self.dtype, count=count)
        finally:
            if own:
                handle.close()
        if data.size != count:
            raise ValueError(f"{self.path}: truncated (rows {start}:{stop})")
        return data.reshape(stop - start, self.shape[1])

    def row_blocks(self, block_rows=BLOCK_ROWS):
        """Yields (start, rows) over the whole file, in order."""
        with open(self.path, "rb") as handle:
            for start in range(0, self.shape[0], block_rows):
                stop = min(start + block_rows, self.shape[0])
                yield start, self.rows(start, stop, handle)

    def columns_transposed(self, columns, out=None, block_rows=BLOCK_ROWS,
                           tile=4096):
        """[len(columns), N] of the chosen columns, one sequential pass.

        Each row block is transposed in tiles of `tile` rows (cache-friendly;
        a plain `.T` copy of a 64K x 1000 block is ~3x slower).
        """
        columns = np.asarray(columns)
        if out is None:
            out = np.empty((len(columns), self.shape[0]), dtype=self.dtype)
        for start, rows in self.row_blocks(block_rows):
            chosen = np.take(rows, columns, axis=1)
            for offset in range(0, len(chosen), tile):
                part = chosen[offset:offset + tile]
                out[:, start + offset:start + offset + len(part)] = part.T
        return out


# ---------------------------------------------------------------- ids

def write_lines(path, values):
    with open(path, "w") as handle:
        for start in range(0, len(values), BLOCK_ROWS):
            chunk = values[start:start + BLOCK_ROWS]
            handle.write("".join(f"{value}\n" for value in chunk))


def read_lines(path):
    with open(path) as handle:
        lines = handle.read().splitlines()
    return np.array(lines, dtype=str) if lines else np.array([], dtype="<U1")


def _write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


# ---------------------------------------------------------------- writing

def _names_failed_writes(method):
    """A CacheWriter method whose failed writes (a full disk, no
    permission) name the cache directory (atomic.names_failed_writes)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with atomic.names_failed_writes(self.path):
            return method(self, *args, **kwargs)
    return call


class CacheWriter:
    """Streams a cache into directory `path`; `commit` makes it readable.

        with CacheWriter(path, num_segments, class_ids) as writer:
            writer.write_segments(ids, probs)  # as many blocks as needed
            writer.commit(meta)

    Any earlier cache in `path` is first de-committed (its meta.json
    removed) and a killed writer's temporaries removed; every file is
    written as `<name>.tmp-<pid>` and renamed into place by `commit`,
    meta.json last. Leaving the block without commit (an
    exception, a kill) leaves no readable cache at `path`. Other entries of
    the directory (inference's `parts/`) are left alone. The directory is
    held (locking.hold) from the start to commit or abort, so a second
    writer refuses at once.
    """

    def __init__(self, path, num_segments, class_ids, num_videos=None,
                 video_class_ids=None):
        self.path = os.path.abspath(path.rstrip("/"))
        self.class_ids = [int(c) for c in class_ids]
        self.video_class_ids = (None if video_class_ids is None
                                else [int(c) for c in video_class_ids])
        if (num_videos is None) != (video_class_ids is None):
            raise ValueError("video probabilities need both num_videos and "
                             "video_class_ids")
        for name, ids in (("class", self.class_ids),
                          ("video class", self.video_class_ids or [])):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name} ids are not unique")
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(locking.hold(self.path, "probability cache"))
        self._names = [SEGMENT_PROBS, SEGMENT_IDS, CLASS_IDS]
        self._videos = None
        self.committed = False
        try:
            self._open_files(num_segments, num_videos)
        except BaseException:
            self.abort()
            raise

    @_names_failed_writes
    def _open_files(self, num_segments, num_videos):
        """De-commit any earlier cache here; open the temporary files."""
        meta_path = os.path.join(self.path, META)
        if os.path.exists(meta_path):
            os.remove(meta_path)  # the old cache stops being readable first
        for name in (SEGMENT_PROBS, SEGMENT_IDS, CLASS_IDS, VIDEO_PROBS, VIDEO_IDS,
                     VIDEO_CLASS_IDS, META):
            atomic.remove_stale_temporaries(os.path.join(self.path, name))
        self._segments = NpyRowWriter(self._tmp(SEGMENT_PROBS),
                                      (num_segments, len(self.class_ids)))
        self._segment_ids = open(self._tmp(SEGMENT_IDS), "w")
        if num_videos is not None:
            self._names += [VIDEO_PROBS, VIDEO_IDS, VIDEO_CLASS_IDS]
            self._videos = NpyRowWriter(self._tmp(VIDEO_PROBS),
                                        (num_videos, len(self.video_class_ids)))
            self._video_ids = open(self._tmp(VIDEO_IDS), "w")

    def _tmp(self, name):
        return atomic.temporary_name(os.path.join(self.path, name))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self.committed:
            self.abort()

    @_names_failed_writes
    def write_segments(self, segment_ids, probabilities):
        if len(segment_ids) != len(probabilities):
            raise ValueError(f"{len(segment_ids)} segment ids for "
                             f"{len(probabilities)} probability rows")
        self._segments.write(probabilities)
        self._segment_ids.write("".join(f"{s}\n" for s in segment_ids))

    @_names_failed_writes
    def write_videos(self, video_ids, probabilities):
        if self._videos is None:
            raise ValueError("this cache was opened without video probabilities")
        if len(video_ids) != len(probabilities):
            raise ValueError(f"{len(video_ids)} video ids for "
                             f"{len(probabilities)} probability rows")
        self._videos.write(probabilities)
        self._video_ids.write("".join(f"{v}\n" for v in video_ids))

    def _close_files(self):
        self._segment_ids.close()
        if self._videos is not None:
            self._video_ids.close()
        self._segments.close()
        if self._videos is not None:
            self._videos.close()

    @_names_failed_writes
    def commit(self, meta):
        """Finish the files, rename them into place, write meta.json last."""
        self._close_files()
        _write_json(self._tmp(CLASS_IDS), self.class_ids)
        if self._videos is not None:
            _write_json(self._tmp(VIDEO_CLASS_IDS), self.video_class_ids)
        else:  # video files of an older cache in this directory
            for name in (VIDEO_PROBS, VIDEO_IDS, VIDEO_CLASS_IDS):
                if os.path.exists(os.path.join(self.path, name)):
                    os.remove(os.path.join(self.path, name))
        meta = {**(meta or {}), "format_version": FORMAT_VERSION,
                "num_segments": self._segments.shape[0],
                "num_classes": len(self.class_ids),
                "num_videos": None if self._videos is None else self._videos.shape[0],
                "num_video_classes": (None if self._videos is None
                                      else len(self.video_class_ids))}
        meta.setdefault("created", now())
        for name in self._names:
            os.replace(self._tmp(name), os.path.join(self.path, name))
        _write_json(self._tmp(META), meta)
        os.replace(self._tmp(META), os.path.join(self.path, META))
        self.committed = True
        self._lock.close()
        return self.path

    def abort(self):
        try:
            self._close_files()
        except (ValueError, OSError, AttributeError):  # AttributeError: not all opened
            pass
        for name in self._names + [META]:
            if os.path.exists(self._tmp(name)):
                os.remove(self._tmp(name))
        self._lock.close()


def write_cache(path, segment_ids, segment_probs, class_ids, meta,
                video_ids=None, video_probs=None, video_class_ids=None):
    """Write a whole cache at once (arrays in memory or memmaps); returns path."""
    segment_probs = np.asarray(segment_probs)
    if segment_probs.ndim != 2 or segment_probs.shape[1] != len(class_ids):
        raise ValueError(f"segment_probs of shape {segment_probs.shape} for "
                         f"{len(class_ids)} class ids")
    has_videos = video_probs is not None
    if has_videos and (video_ids is None or video_class_ids is None):
        raise ValueError("video_probs need video_ids and video_class_ids")
    with CacheWriter(path, len(segment_probs), class_ids,
                     len(video_probs) if has_videos else None,
                     video_class_ids if has_videos else None) as writer:
        for start in range(0, len(segment_probs), BLOCK_ROWS):
            stop = start + BLOCK_ROWS
            writer.write_segments(segment_ids[start:stop],
                                  segment_probs[start:stop])
        if has_videos:
            video_probs = np.asarray(video_probs)
            if video_probs.ndim != 2 or video_probs.shape[1] != len(video_class_ids):
                raise ValueError(f"video_probs of shape {video_probs.shape} for "
                                 f"{len(video_class_ids)} video class ids")
            for start in range(0, len(video_probs), BLOCK_ROWS):
                stop = start + BLOCK_ROWS
                writer.write_videos(video_ids[start:stop], video_probs[start:stop])
        return writer.commit(meta)


# ---------------------------------------------------------------- reading

class ProbabilityCache:
    """An opened cache (see the module docstring). Arrays are memory-mapped."""

    def __init__(self, path, segment_ids, class_ids, segment_probs, meta,
                 video_ids=None, video_class_ids=None, video_probs=None):
        self.path = path
        self.segment_ids = segment_ids
        self.class_ids = class_ids
        self.segment_probs = segment_probs
        self.meta = meta
        self.video_ids = video_ids
        self.video_class_ids = video_class_ids
        self.video_probs = video_probs

    @classmethod
    def open(cls, path):
        meta_path = os.path.join(path, META)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no probability cache at {path}")
        if not os.path.exists(meta_path):
            raise ValueError(f"{path} is not a finished probability cache: it "
                             f"has no {META} (its write never committed)")
        meta = _read_json(meta_path)
        class_ids = [int(c) for c in _read_json(os.path.join(path, CLASS_IDS))]
        segment_ids = read_lines(os.path.join(path, SEGMENT_IDS))
        segment_probs = np.load(os.path.join(path, SEGMENT_PROBS), mmap_mode="r")
        expected = (meta.get("num_segments"), meta.get("num_classes"))
        if segment_probs.shape != expected or segment_probs.shape != (
                len(segment_ids), len(class_ids)):
            raise ValueError(
                f"{path}: {SEGMENT_PROBS} has shape {segment_probs.shape}, "
                f"{len(segment_ids)} segment ids, {len(class_ids)} class ids, "
                f"meta says {expected}")
        video_ids = video_class_ids = video_probs = None
        if os.path.exists(os.path.join(path, VIDEO_PROBS)):
            video_ids = read_lines(os.path.join(path, VIDEO_IDS))
            video_class_ids = [int(c) for c in
                               _read_json(os.path.join(path, VIDEO_CLASS_IDS))]
            video_probs = np.load(os.path.join(path, VIDEO_PROBS), mmap_mode="r")
            if video_probs.shape != (len(video_ids), len(video_class_ids)):
                raise ValueError(
                    f"{path}: {VIDEO_PROBS} has shape {video_probs.shape} for "
                    f"{len(video_ids)} video ids and {len(video_class_ids)} "
                    "video class ids")
        return cls(path, segment_ids, class_ids, segment_probs, meta,
                   video_ids, video_class_ids, video_probs)

    @property
    def fingerprint(self):
        return self.meta.get("fingerprint")

    @property
    def shape(self):
        return self.segment_probs.shape

    def has_videos(self):
        return self.video_probs is not None

    def segment_reader(self):
        return NpyReader(os.path.join(self.path, SEGMENT_PROBS))

    def video_reader(self):
        if not self.has_videos():
            raise ValueError(f"{self.path} holds no video probabilities")
        return NpyReader(os.path.join(self.path, VIDEO_PROBS))

    def segment_video_rows(self):
        """[N] int: the row in video_ids of each segment's video.

        Raises ValueError naming a segment whose video has no row.
        """
        if not self.has_videos():
            raise ValueError(f"{self.path} holds no video probabilities (write "
                             "it with --video_train_dir)")
        return segment_video_rows(self.segment_ids, self.video_ids, self.path)

    def check_compatible(self, other):
        """ValueError unless `other` ranks the same segments and classes, in
        the same order (what averaging two caches needs)."""
        if list(self.class_ids) != list(other.class_ids):
            if sorted(self.class_ids) == sorted(other.class_ids):
                detail = "the same classes in another column order"
            else:
                only = sorted(set(self.class_ids) - set(other.class_ids))[:5]
                detail = (f"{len(self.class_ids)} vs {len(other.class_ids)} "
                          f"classes (e.g. {only} only in the first)")
            raise ValueError(f"caches {self.path} and {other.path} have "
                             f"different class ids: {detail}")
        if len(self.segment_ids) != len(other.segment_ids):
            raise ValueError(
                f"caches {self.path} and {other.path} have different segments: "
                f"{len(self.segment_ids)} vs {len(other.segment_ids)}")
        differ = np.flatnonzero(self.segment_ids != other.segment_ids)
        if len(differ):
            row = int(differ[0])
            raise ValueError(
                f"caches {self.path} and {other.path} have different segment "
                f"ids: {len(differ)} rows differ, first row {row}: "
                f"{str(self.segment_ids[row])!r} vs {str(other.segment_ids[row])!r}")
        if self.has_videos() and other.has_videos():
            if list(self.video_class_ids) != list(other.video_class_ids):
                raise ValueError(f"caches {self.path} and {other.path} have "
                                 "different video class ids")
            if (len(self.video_ids) != len(other.video_ids)
                    or (self.video_ids != other.video_ids).any()):
                raise ValueError(f"caches {self.path} and {other.path} have "
                                 "different video ids")


def segment_video_rows(segment_ids, video_ids, where="cache"):
    index = {video: row for row, video in enumerate(np.asarray(video_ids).tolist())}
    rows = np.empty(len(segment_ids), dtype=np.int64)
    for i, segment in enumerate(np.asarray(segment_ids).tolist()):
        row = index.get(segment.rpartition(":")[0])
        if row is None:
            raise ValueError(f"{where}: segment {segment!r} has no video-level "
                             "probabilities")
        rows[i] = row
    return rows


def merge_caches(paths, output_path, block_rows=BLOCK_ROWS):
    """Concatenate shard caches (same classes, same model) into one cache.

    Streams row blocks into the output; a segment or video id present in two
    shards is an error (a shard merged twice).
    """
    if not paths:
        raise ValueError("no cache to merge")
    caches = [ProbabilityCache.open(path) for path in paths]
    first = caches[0]
    for cache in caches[1:]:
        for key, what in (("fingerprint", "model"),
                          ("video_fingerprint", "video-level model")):
            if cache.meta.get(key) != first.meta.get(key):
                raise ValueError(
                    f"cannot merge {first.path} and {cache.path}: they come "
                    f"from different {what}s ({key} {first.meta.get(key)} vs "
                    f"{cache.meta.get(key)})")
        if list(cache.class_ids) != list(first.class_ids):
            raise ValueError(f"cannot merge {first.path} and {cache.path}: "
                             "different class ids")
        if cache.has_videos() != first.has_videos() or (
                first.has_videos()
                and list(cache.video_class_ids) != list(first.video_class_ids)):
            raise ValueError(f"cannot merge {first.path} and {cache.path}: "
                             "different video-level probabilities")
    for what in ("segment_ids", "video_ids"):
        if getattr(first, what) is None:
            continue
        seen = {}
        for cache in caches:
            for value in getattr(cache, what).tolist():
                if value in seen:
                    raise ValueError(f"cannot merge: {what[:-4]} {value!r} is in "
                                     f"both {seen[value]} and {cache.path}")
                seen[value] = cache.path
        del seen
    num_segments = sum(len(c.segment_ids) for c in caches)
    has_videos = first.has_videos()
    with CacheWriter(output_path, num_segments, first.class_ids,
                     sum(len(c.video_ids) for c in caches) if has_videos else None,
                     first.video_class_ids if has_videos else None) as writer:
        for cache in caches:
            for start, rows in cache.segment_reader().row_blocks(block_rows):
                writer.write_segments(cache.segment_ids[start:start + len(rows)], rows)
            if has_videos:
                for start, rows in cache.video_reader().row_blocks(block_rows):
                    writer.write_videos(cache.video_ids[start:start + len(rows)], rows)
        meta = {key: value for key, value in first.meta.items()
                if key not in ("num_segments", "num_videos", "created",
                               "input_files", "shard_index", "num_shards")}
        meta["input_files"] = [f for c in caches for f in c.meta.get("input_files", [])]
        meta["merged_from"] = [os.path.abspath(p) for p in paths]
        meta["created"] = now()
        return writer.commit(meta)
