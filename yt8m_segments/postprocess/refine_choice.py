"""Choosing the refinement on held-out rated videos, and spotting a video
model that cannot help it.

Refinement trusts the video model. One that learned only the label prior
puts the same few frequent classes on top of every video, so topk keeps
them everywhere and drops every other class, and MAP@K falls (measured:
0.447 -> 0.159), silently. So:

- `choose` scores a small grid of refinements (`candidates`) on a cache
  of held-out rated videos with video probabilities (inference.py over
  validate records with --video_train_dir) by MAP@K, as eval.py scores a
  cache, and returns the ranked table and the choice. `none` comes first
  and wins ties, and a refinement has to earn its place twice: a higher
  MAP on the whole cache, and a higher MAP than none on at least TRUST
  (95%) of ROUNDS random halves of its videos. Chosen by MAP alone on
  ~400 held-out videos, the best of the grid lost on the test set in four
  of the bench's five worlds (by up to 0.043); small held-out gains are
  noise, and the halves tell them from real ones.
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

from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import refine

AUTO = "auto"
TOPK_VALUES = (1, 2, 3, 5, 10, 20, 50)
THRESHOLDS = (1e-4, 2.5e-4, 1e-3, 1e-2, 0.05)
# 0.02: about 2nd place's 2000 videos per class of the 89,506 test videos.
VIDEO_FRACTIONS = (0.02, 0.05, 0.2, 0.5)
FUSION_WEIGHTS = (0.05, 0.1, 0.2, 0.5)
TOPK_FUSION = ((20, 0.05), (5, 0.1))  # 3rd place's, and a tighter one
TOP = 5
CONCENTRATION_WARNING = 0.75
ROUNDS = 100  # random halves of the held-out videos
TRUST = 0.95  # share of the halves a refinement must win against none


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


def choose(cache, ground_truth, k, grid=None, rounds=ROUNDS, seed=0):
    """(table, best) over `grid` (default `candidates`, `none` first) on an
    opened cache.ProbabilityCache with video probabilities and its rated
    pairs ({class: {segment id: score}}).

    table: [(RefineOptions, MAP@k, halves won)] by MAP, best first (a
    stable sort, so `none` wins ties); halves won is the share of `rounds`
    random halves of the videos on which the candidate's MAP beats none's
    (None for candidates no better than none on the whole cache). best: the
    first candidate that wins at least TRUST of the halves, else none.
    Logs `check_video_model` of the cache first."""
    if not cache.has_videos():
        raise ValueError(f"choosing a refinement needs video-level "
                         f"probabilities, and the cache {cache.path} has "
                         "none: write it with --video_train_dir")
    check_video_model(cache)
    grid = candidates(len(cache.video_class_ids)) if grid is None else grid
    if grid[0].active:
        raise ValueError("the grid of refinements must start with none")
    rated = _RatedClasses(cache, ground_truth)
    values = [metrics.segment_map_at_k(refine.ranked_from_cache(rated, k, options),
                                       ground_truth, k) for options in grid]
    halves = _Halves(rated, ground_truth, k, rounds, seed)
    none_maps = halves.maps(grid[0])
    won = [float(np.mean(halves.maps(options) > none_maps))
           if value > values[0] else None
           for options, value in zip(grid, values)]
    order = np.argsort(-np.asarray(values), kind="stable")
    table = [(grid[i], values[i], won[i]) for i in order]
    trusted = [options for options, _, share in table
               if share is not None and share >= TRUST]
    return table, (trusted[0] if trusted else grid[0])


class _Halves:
    """MAP@k of a refinement on `rounds` random halves of a cache's videos
    (K scaled to each half's segments, as `held_out_k`), against which a
    refinement's gain over none is tested: on ~400 held-out videos the
    best of the grid beat none by 0.002-0.013 MAP and then lost on the
    test set (bench/recipes.py), a gain the halves show as noise.

    Each class's list is ranked once over the whole cache, as deep as any
    half's K reaches (`window`); a half's list is that list restricted to
    its segments. Unrated pairs take no rank, as in metrics.segment_ap_per_class.
    100 rounds take ~2 s per candidate at 40,000 segments x 1,000 classes
    on 2 cores; only candidates that beat none on the whole cache run them.
    """

    def __init__(self, rated, ground_truth, k, rounds, seed):
        if rounds < 1:
            raise ValueError(f"the halves need at least 1 round, got {rounds}")
        self.cache = rated
        num_segments = rated.shape[0]
        video_rows = rated.segment_video_rows()
        num_videos = len(rated.video_ids)
        rng = np.random.default_rng(seed)
        self.masks = np.stack([
            np.isin(video_rows, rng.permutation(num_videos)[:max(1, num_videos // 2)])
            for _ in range(rounds)])
        self.ks = np.array([held_out_k(k, num_segments, int(mask.sum()))
                            for mask in self.masks])
        # Rated pairs as sorted codes class column * N + segment row.
        column = {int(c): i for i, c in enumerate(rated.class_ids)}
        row = {s: i for i, s in enumerate(np.asarray(rated.segment_ids).tolist())}
        pairs = [(column[int(c)] * num_segments + row[s], score > 0)
                 for c, ratings in ground_truth.items() if int(c) in column
                 for s, score in ratings.items() if s in row]
        codes, positive = (np.array(v) for v in zip(*pairs))
        order = np.argsort(codes)
        self.codes, self.positive = codes[order], positive[order]
        # positives[round, class column] among the half's segments.
        columns, rows = np.divmod(self.codes[self.positive], num_segments)
        self.positives = np.stack([
            np.bincount(columns[mask[rows]], minlength=len(rated.class_ids))
            for mask in self.masks])
        self.window = min(num_segments, 3 * int(self.ks.max()))

    def _ratings(self, rows):
        """[C, W] int8 of ranked rows: 1 positive, 0 negative, -1 unrated."""
        codes = np.arange(rows.shape[0])[:, None] * self.cache.shape[0] + rows
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        found = self.codes[at] == codes
        return np.where(found, self.positive[at].astype(np.int8), np.int8(-1))

    def maps(self, options):
        """[rounds] MAP of `options` on each half."""
        num_segments = self.cache.shape[0]
        while True:
            rows, kept = refine.ranked_rows_from_cache(self.cache, self.window, options)
            ratings = self._ratings(rows)
            rated, positive = kept & (ratings >= 0), kept & (ratings > 0)
            # A class whose list ends before the window (the rest dropped)
            # or a window of every segment holds all a half can take.
            complete = ~kept[:, -1] | (self.window == num_segments)
            result = []
            for mask, k, positives in zip(self.masks, self.ks, self.positives):
                inside = mask[rows]
                depth = np.cumsum(inside & kept, axis=1, dtype=np.int32)
                if not np.all(complete | (depth[:, -1] >= k)):
                    break
                taken = inside & (depth <= k)
                ranks = np.cumsum(taken & rated, axis=1, dtype=np.int32)
                hits = np.cumsum(taken & positive, axis=1, dtype=np.int32)
                at = np.nonzero(taken & positive)
                ap = np.bincount(at[0], hits[at] / ranks[at], minlength=len(rows))
                has = positives > 0
                result.append(float(np.mean(ap[has] / positives[has])) if has.any() else 0.0)
            else:
                return np.array(result)
            self.window = min(num_segments, 2 * self.window)


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


def table_lines(table, k, chosen):
    """`candidate <mode> <parameters> MAP@k <value> halves_won <share>` per
    row, best MAP first, then `chosen ...` of the chosen one ('-': no
    parameter, or a share not measured)."""
    def line(tag, options, value, share):
        won = "-" if share is None else f"{share:.2f}"
        return (f"{tag} {options.mode} {options.parameters or '-'} "
                f"MAP@{k} {value:.6f} halves_won {won}")
    return ([line("candidate", *row) for row in table]
            + [line("chosen", *row) for row in table if row[0] == chosen])


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
    for line in table_lines(table, held_k, best):
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
