"""Choosing the refinement on held-out rated videos, and spotting a video
model that cannot help it.

Refinement trusts the video model. One that learned only the label prior
puts the same few frequent classes on top of every video, so topk keeps
them everywhere and drops every other class, and MAP@K falls (measured:
0.447 -> 0.159), silently. So:

- `choose` scores a small grid of refinements (`candidates`) on a cache
  of held-out rated videos with video probabilities (inference.py over
  validate records with --video_train_dir) by MAP@K, as eval.py scores a
  cache, and returns the ranked table and the best. `none` comes first and
  wins ties: a refinement has to earn its place.
- `top_class_concentration` tells a prior-like video model from its
  probabilities alone: the share of all videos' top-5 slots held by the 5
  classes that hold most of them. A prior-only model gives 1.0 (the same 5
  classes on every video; noise among them changes nothing). A model that
  reads content puts each video's own labels there: on YouTube-8M the 5
  most frequent classes (Game, Video game, Vehicle, ... by the
  vocabulary's TrainVideoCount) give roughly 0.6 of a video's ~3 labels,
  so even an oracle whose 2 free slots all went to those 5 classes would
  score about (0.6 + 2) / 5 = 0.52. CONCENTRATION_WARNING = 0.75 sits
  between, clear of both.
  The figure needs labels spread over many more than 5 classes: on a toy
  vocabulary of a handful of active classes any model scores high.

`--refine=auto` (inference.py) chooses on the held-out cache at the K that
reaches as deep into its class lists as the submission's K into the test
set's (`held_out_k`); video_num is tried as shares of the videos
(`videos_fraction`), so its choice carries over to the test set's size.
"""

import numpy as np
from absl import logging

from yt8m_segments import cache as cache_lib
from yt8m_segments import metrics
from yt8m_segments import refine

AUTO = "auto"
TOPK_VALUES = (1, 2, 3, 5, 10, 20, 50)
THRESHOLDS = (1e-4, 2.5e-4, 1e-3, 1e-2, 0.05)
# 0.02: about 2nd place's 2000 videos per class of the 89,506 test videos.
VIDEO_FRACTIONS = (0.02, 0.05, 0.2, 0.5)
FUSION_WEIGHTS = (0.05, 0.1, 0.2, 0.5)
TOPK_FUSION = ((20, 0.05), (5, 0.1))  # 3rd place's, and a tighter one
TOP = 5
CONCENTRATION_WARNING = 0.75


def candidates(num_video_classes):
    """The grid of RefineOptions, `none` first. A top-k that keeps the whole
    video vocabulary is `none` again, so it is left out."""
    options = refine.RefineOptions
    grid = [options("none")]
    grid += [options("topk", topk=k) for k in TOPK_VALUES if k < num_video_classes]
    grid += [options("confidence", threshold=t) for t in THRESHOLDS]
    grid += [options("video_num", videos_fraction=f) for f in VIDEO_FRACTIONS]
    grid += [options("fusion", fusion_weight=b) for b in FUSION_WEIGHTS]
    grid += [options("topk,fusion", topk=k, fusion_weight=b)
             for k, b in TOPK_FUSION if k < num_video_classes]
    return grid


def choose(cache, ground_truth, k, grid=None):
    """(table, best): [(RefineOptions, MAP@k)] best first and the best
    options, over `grid` (default `candidates`) on an opened
    cache.ProbabilityCache with video probabilities and its rated pairs
    ({class: {segment id: score}}). The sort is stable and `none` is first,
    so it wins ties. Logs `check_video_model` of the cache first."""
    if not cache.has_videos():
        raise ValueError(f"choosing a refinement needs video-level "
                         f"probabilities, and the cache {cache.path} has "
                         "none: write it with --video_train_dir")
    check_video_model(cache)
    grid = candidates(len(cache.video_class_ids)) if grid is None else grid
    rated = _RatedClasses(cache, ground_truth)
    values = [metrics.segment_map_at_k(refine.ranked_from_cache(rated, k, options),
                                       ground_truth, k) for options in grid]
    order = np.argsort(-np.asarray(values), kind="stable")
    table = [(grid[i], values[i]) for i in order]
    return table, table[0][0]


class _RatedClasses(cache_lib.ProbabilityCache):
    """A cache restricted to the classes with a positive rating, the only
    ones MAP@K counts: what every candidate reads, so its segment
    probabilities are read into memory (stored [C, N], the layout selection
    takes) and its segments' video rows are looked up once."""

    def __init__(self, cache, ground_truth):
        positives = metrics.num_positives(ground_truth)
        columns = [i for i, c in enumerate(cache.class_ids) if positives.get(c, 0)]
        super().__init__(
            cache.path, cache.segment_ids, [cache.class_ids[i] for i in columns],
            np.ascontiguousarray(cache.segment_probs[:, columns].T).T,
            cache.meta, cache.video_ids, cache.video_class_ids, cache.video_probs)
        self._video_rows = cache.segment_video_rows()

    def segment_video_rows(self):
        return self._video_rows


def table_lines(table, k):
    """`candidate <mode> <parameters> MAP@k <value>` per row, best first,
    then the same line of the best as `chosen ...` ('-': no parameter)."""
    def line(tag, options, value):
        return f"{tag} {options.mode} {options.parameters or '-'} MAP@{k} {value:.6f}"
    return ([line("candidate", *row) for row in table]
            + [line("chosen", *table[0])])


def held_out_k(k, num_segments, held_out_segments):
    """The K that reaches as deep into a held-out cache of
    `held_out_segments` as `k` into `num_segments` (MAP@K, and so the
    choice, depends on K / segments); round half up, at least 1."""
    return max(1, (2 * k * held_out_segments + num_segments) // (2 * num_segments))


def choose_for(cache, k, held_out, ground_truth):
    """The best refinement on the opened cache `held_out` (rated pairs
    `ground_truth`) for a submission of `cache` at K `k`, scored at
    `held_out_k`; the table is logged."""
    held_k = held_out_k(k, cache.shape[0], held_out.shape[0])
    table, best = choose(held_out, ground_truth, held_k)
    for line in table_lines(table, held_k):
        logging.info("refinement on %s: %s", held_out.path, line)
    return best


def top_class_concentration(video_probs, top=TOP, block_rows=refine.VIDEO_BLOCK):
    """Share of all videos' top-`top` slots held by the `top` classes that
    hold most of them (see the module docstring): 1.0 for a model of the
    label prior. video_probs: [V, Cv] array, memmap or cache.NpyReader."""
    num_videos, num_classes = video_probs.shape
    if num_videos == 0:
        raise ValueError("no video probabilities to check")
    top = min(top, num_classes)
    counts = np.zeros(num_classes, dtype=np.int64)
    for _, rows in refine.row_blocks(video_probs, block_rows):
        best = np.argpartition(rows, num_classes - top, axis=1)[:, num_classes - top:]
        counts += np.bincount(best.ravel(), minlength=num_classes)
    return float(np.sort(counts)[-top:].sum() / (num_videos * top))


def check_video_model(cache):
    """The concentration of a cache's video probabilities, logged; a WARNING
    above CONCENTRATION_WARNING (refinement will likely hurt)."""
    figure = top_class_concentration(cache.video_reader())
    if figure > CONCENTRATION_WARNING:
        logging.warning(
            "the video model of %s looks uninformative: %.0f%% of its videos' "
            "top-%d slots go to the same %d classes (above %.0f%%; a model "
            "of the label prior gives 100%%). Refinement will likely hurt "
            "MAP: check the video model's GAP against bench/baselines.py",
            cache.path, 100 * figure, TOP, TOP, 100 * CONCENTRATION_WARNING)
    else:
        logging.info("video model of %s: %.0f%% of the top-%d slots go to the "
                     "same %d classes (a warning above %.0f%%)", cache.path,
                     100 * figure, TOP, TOP, 100 * CONCENTRATION_WARNING)
    return figure
