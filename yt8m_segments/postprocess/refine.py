"""Refinement of segment scores with video-level predictions (docs/results.md).

Modes (`--refine`, comma-separated to combine; filters intersect):
  none        segment probabilities as they are
  topk        keep class c for a video's segments only if c is among the
              video's top `topk` (20) classes over the whole video vocabulary
  confidence  ... only if the video's probability of c is above `threshold`
              (2nd place: 2.5e-4)
  video_num   ... only if the video is among class c's top
              `videos_per_class` (2000) videos, or its top
              `videos_fraction` of the videos when that is set (a share
              carries over between sets of different sizes)
  fusion      rank by video^b * segment^(1-b), b = `fusion_weight`
              (3rd place: 0.05, over each video's top-20 classes, i.e.
              `--refine=topk,fusion`)
A dropped (segment, class) pair scores DROPPED (-1), below every kept pair.

Work is by blocks of segment rows, as selection reads a cache (row-major), so
no second N x C float32 matrix ever exists; filters alone only mark dropped
pairs (selection then ranks float16 bits as integers), fusion gives float32
scores per block. The per-(video, class) drop matrix is [V, C] bool (90 MB at
the real test set's 89,506 x 1000), built with top_columns over blocks of
videos (topk) or of classes (video_num).

`ranked_from_cache` gives the class lists a refined cache submits, the
input of MAP@K (eval.py, refine_choice.py).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from yt8m_segments.postprocess import submission

MODES = ("none", "topk", "confidence", "video_num", "fusion")
FILTERS = ("topk", "confidence", "video_num")
DROPPED = -1.0
# 2048 x 3862 float16 (16 MB): temporaries under glibc's 32 MB mmap threshold.
VIDEO_BLOCK = 2048
CLASS_BLOCK = 64


@dataclasses.dataclass(frozen=True)
class RefineOptions:
    mode: str = "none"
    topk: int = 20
    threshold: float = 0.00025
    videos_per_class: int = 2000
    fusion_weight: float = 0.05
    videos_fraction: float = None

    @property
    def modes(self):
        return parse_modes(self.mode)

    @property
    def active(self):
        return bool(self.modes)

    def videos_kept(self, num_videos):
        """video_num's videos per class among `num_videos`."""
        if self.videos_fraction is None:
            return self.videos_per_class
        if not 0 < self.videos_fraction <= 1:
            raise ValueError("--refine_videos_fraction must be in (0, 1], got "
                             f"{self.videos_fraction}")
        return max(1, round(self.videos_fraction * num_videos))

    @property
    def parameters(self):
        """'topk=5,fusion_weight=0.05': the values the modes use, named as
        their flags without `refine_` ('' for none)."""
        names = {"topk": "topk", "confidence": "threshold",
                 "video_num": ("videos_per_class" if self.videos_fraction is None
                               else "videos_fraction"),
                 "fusion": "fusion_weight"}
        values = {name: getattr(self, name)
                  for name in (names[mode] for mode in self.modes)}
        return ",".join(f"{name}={value:g}" for name, value in values.items())


def parse_modes(text):
    """'topk,fusion' -> ('topk', 'fusion'); 'none' or '' -> ()."""
    modes = tuple(m.strip() for m in (text or "none").split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown refinement {unknown}; choose from {list(MODES)} "
                         "(comma-separated to combine)")
    if "none" in modes and len(modes) > 1:
        raise ValueError("refinement 'none' cannot be combined with others")
    return tuple(m for m in modes if m != "none")


def options_from_flags(flag_values):
    return RefineOptions(flag_values.refine, flag_values.refine_topk,
                         flag_values.refine_threshold,
                         flag_values.refine_videos_per_class,
                         flag_values.refine_fusion_weight,
                         flag_values.refine_videos_fraction)


def row_blocks(source, block_rows):
    """(start, rows) of a 2-D array, memmap or cache.NpyReader, as stored."""
    if hasattr(source, "row_blocks"):
        yield from source.row_blocks(block_rows)
    else:
        for start in range(0, source.shape[0], block_rows):
            yield start, np.asarray(source[start:start + block_rows])


def _as_float16(values):
    """fp16 as stored, or a float array rounded to fp16 (video probabilities
    are ranked as the cache stores them)."""
    values = np.asarray(values)
    return values if values.dtype == np.float16 else values.astype(np.float16)


def top_columns(keys, k):
    """(row, column) index pairs of each row's k largest keys (ties: the lower
    column) in a [rows, n] block of integer keys, rows ascending.

    ~3x faster than tf.math.top_k: the k-th largest of n / 32 group maxima
    (columns j, j + G, j + 2G, ...) is a lower bound of a row's k-th largest
    key (k groups reach it), so only the few keys at or above it are sorted.
    """
    num_rows, n = keys.shape
    k = min(k, n)
    groups = min(n, max(k, 128))
    maxima = keys[:, :n - n % groups].reshape(num_rows, n // groups, groups).max(axis=1)
    tail = keys[:, n - n % groups:]
    np.maximum(maxima[:, :tail.shape[1]], tail, out=maxima[:, :tail.shape[1]])
    bound = np.partition(maxima, groups - k, axis=1)[:, groups - k]
    flat = np.flatnonzero(keys >= bound[:, None])
    row, column = np.divmod(flat, n)
    # Best first within a row (stable sorts: ties keep the lower column).
    order = np.argsort(~keys.ravel()[flat], kind="stable")
    order = order[np.argsort(row[order], kind="stable")]
    row, column = row[order], column[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    return row[rank < k], column[rank < k]


class Refiner:
    """Refines row blocks [rows, C] of segment scores.

    class_ids: the segment classes (columns of the segment scores).
    segment_video_rows: [N] row of each segment's video in `video_probs`.
    video_probs: [V, Cv] (array, memmap or cache.NpyReader; float16 as in a
    cache) over video_class_ids, which must include every segment class.

    `dropped(segment_rows)` gives the dropped pairs of a block of rows;
    `fused(raw, segment_rows)` its fused scores; `scores(raw, segment_rows)`
    the refined float32 scores (DROPPED where dropped). Per (video, class)
    state is [V, C] (rows of videos, as selection reads segments row-major):
    the dropped mask (90 MB at the real test set's 89,506 x 1000) and, for
    fusion, the video probabilities as float16 bits (179 MB). Video
    probabilities are ranked through integer order keys with top_columns
    (stable: the lower index wins a tie).
    """

    def __init__(self, options, class_ids, segment_video_rows, video_probs,
                 video_class_ids):
        self.options = options
        self.modes = options.modes
        self.fuses = "fusion" in self.modes
        self.rows = np.asarray(segment_video_rows, dtype=np.int64)
        position = {int(c): i for i, c in enumerate(video_class_ids)}
        missing = [int(c) for c in class_ids if int(c) not in position]
        if missing:
            raise ValueError(f"the video-level probabilities have no column for "
                             f"segment classes {missing[:10]}")
        columns = np.array([position[int(c)] for c in class_ids], dtype=np.int64)
        num_videos, num_video_classes = video_probs.shape
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= num_videos):
            raise ValueError("segment video rows out of range of the video "
                             f"probabilities ({num_videos} videos)")
        num_classes = len(columns)
        # Segment-class position of each video-vocabulary column, -1 if none.
        segment_position = np.full(num_video_classes, -1, dtype=np.int64)
        segment_position[columns] = np.arange(num_classes)

        keep = None  # [V, C] bool
        # [V, C] float16 bits: each video's probability of each segment class
        # (topk alone ranks whole rows, so needs none).
        self.video_bits = (np.empty((num_videos, num_classes), dtype=np.uint16)
                           if set(self.modes) - {"topk"} else None)
        if "topk" in self.modes:
            keep = np.zeros((num_videos, num_classes), dtype=bool)
            k = min(options.topk, num_video_classes)
            if k < 1:
                raise ValueError(f"--refine_topk must be at least 1, got {options.topk}")
        for start, rows in row_blocks(video_probs, VIDEO_BLOCK):
            rows = _as_float16(rows)
            stop = start + len(rows)
            if self.video_bits is not None:
                np.take(rows.view(np.uint16), columns, axis=1,
                        out=self.video_bits[start:stop])
            if "topk" in self.modes:
                video, column = top_columns(submission.signed_keys(rows), k)
                position = segment_position[column]
                segment_class = position >= 0
                keep[start + video[segment_class], position[segment_class]] = True
        if "confidence" in self.modes:
            above = submission.F16_TO_F32[self.video_bits] > np.float32(
                options.threshold)
            keep = above if keep is None else keep & above
        if "video_num" in self.modes:
            k = options.videos_kept(num_videos)
            if k < 1:
                raise ValueError("--refine_videos_per_class must be at least 1")
            k = min(k, num_videos)
            top_videos = np.zeros((num_videos, num_classes), dtype=bool)
            for start in range(0, num_classes, CLASS_BLOCK):
                block = np.ascontiguousarray(self.video_bits[:, start:start + CLASS_BLOCK].T)
                block_class, video = top_columns(
                    submission.signed_keys(block.view(np.float16)), k)
                top_videos[video, start + block_class] = True
            keep = top_videos if keep is None else keep & top_videos
        if self.fuses:
            weight = np.float32(options.fusion_weight)
            table = submission.F16_TO_F32
            with np.errstate(invalid="ignore"):  # negative fp16 -> NaN: refused later
                self._video_power = np.power(table, weight)
                self._segment_power = np.power(table, np.float32(1.0) - weight)
        else:
            self.video_bits = None  # only fusion needs them past here
        if keep is not None and not keep.any():
            # Not an error, but almost surely a wrong flag value.
            tf.get_logger().warning("refinement keeps no (video, class) pair")
        self.drop = None if keep is None else np.logical_not(keep, out=keep)

    def dropped(self, segment_rows):
        """[rows, C] bool, True where the pair is dropped, for segment rows
        `segment_rows` (a slice or an index array); None if no filter is on."""
        if self.drop is None:
            return None
        return np.take(self.drop, self.rows[segment_rows], axis=0)

    def fused(self, raw, segment_rows):
        """video^b * segment^(1-b), float32, of a raw [rows, C] block (float16
        as in a cache, or float) at segment rows `segment_rows`."""
        raw = np.asarray(raw)
        weight = np.float32(self.options.fusion_weight)
        if raw.dtype == np.float16:
            scores = self._segment_power[raw.view(np.uint16)]
        else:
            scores = np.power(raw.astype(np.float32), np.float32(1.0) - weight)
        scores *= self._video_power[self.video_bits[self.rows[segment_rows]]]
        return scores

    def scores(self, raw, segment_rows=slice(None)):
        """Refined float32 scores of a raw [rows, C] block (float16 as in a
        cache, or float) at segment rows `segment_rows` (default: all)."""
        raw = np.asarray(raw)
        if self.fuses:
            scores = self.fused(raw, segment_rows)
        elif raw.dtype == np.float16:
            scores = submission.float16_to_float32(raw)
        else:
            scores = raw.astype(np.float32)  # a copy: the caller's stays
        dropped = self.dropped(segment_rows)
        if dropped is not None:
            np.copyto(scores, np.float32(DROPPED), where=dropped)
        return scores

    def kept(self, rows):
        """[C, k] bool: whether each class's selected segment rows ([C, k],
        every class of the refiner) survive the filters."""
        if self.drop is None:
            return np.ones(np.shape(rows), dtype=bool)
        rows = np.asarray(rows)
        return ~self.drop[self.rows[rows], np.arange(len(rows))[:, None]]


def refiner_for_cache(cache, options):
    """A Refiner over an opened cache.ProbabilityCache, or None for 'none'."""
    if not options.active:
        return None
    if not cache.has_videos():
        raise ValueError(
            f"--refine={options.mode} needs video-level probabilities, and the "
            f"cache {cache.path} has none: write it with --video_train_dir")
    return Refiner(options, cache.class_ids, cache.segment_video_rows(),
                   cache.video_reader(), cache.video_class_ids)


def ranked_rows_from_cache(cache, k, options=None):
    """(rows, kept): [C, min(k, N)] segment rows of each class's best
    refined scores, best first, and whether each survives the filters
    (all True without a filter)."""
    refiner = refiner_for_cache(cache, options or RefineOptions())
    rows = submission.top_k_per_class(cache.segment_probs, k, refiner=refiner)
    if refiner is None:
        return rows, np.ones(rows.shape, dtype=bool)
    return rows, refiner.kept(rows)


def ranked_from_cache(cache, k, options=None):
    """dict class id -> its top-k segment ids in a cache.ProbabilityCache,
    refined by `options` (RefineOptions; None: none): the ranking a
    submission written from it holds, less the pairs refinement drops.

    Selection is submission.top_k_per_class on the cache's float16 bits
    (filters) or fused float32 scores: the same lists as the CSV.
    """
    rows, kept = ranked_rows_from_cache(cache, k, options)
    rows = [r[keep] for r, keep in zip(rows, kept)]
    # Object array of the ids: the lists share one str per segment.
    segment_ids = np.empty(len(cache.segment_ids), dtype=object)
    segment_ids[:] = np.asarray(cache.segment_ids).tolist()
    return {int(class_id): segment_ids[class_rows].tolist()
            for class_id, class_rows in zip(cache.class_ids, rows)}


def refine_dense(segment_probs, class_ids, segment_video_rows, video_probs,
                 video_class_ids, options):
    """Refined [N, C] float32 copy of a small in-memory matrix (tests, eval)."""
    raw = np.asarray(segment_probs)
    if not options.active:
        return raw.astype(np.float32)
    refiner = Refiner(options, class_ids, segment_video_rows, video_probs,
                      video_class_ids)
    return refiner.scores(raw)
