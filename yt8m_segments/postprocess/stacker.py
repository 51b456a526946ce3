"""A LightGBM stacker over the probability caches of several models: fit
on the rated (segment, class) pairs of validate caches from class-agnostic
features (each model's probability, their mean, std and max, the video-level
probability, the rank by mean), then score test caches of the same models
into a new cache, by row blocks, optionally only each class's best
candidates by mean. lightgbm is imported on first use (an optional extra).
"""

import json
import os
import shutil
import tempfile

from absl import logging

import numpy as np

from yt8m_segments import atomic
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.postprocess import ensemble
from yt8m_segments.postprocess import submission

INSTALL_HINT = ("the stacker needs lightgbm: pip install 'yt8m_segments[stacker]' "
                "(or pip install 'lightgbm>=4')")
MODEL_FILE = "model.txt"
CONFIG_FILE = "stacker.json"
PREDICT_BLOCK_ROWS = 2048


def _lightgbm():
    try:
        import lightgbm  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return lightgbm


def feature_names(num_models, with_video):
    return ([f"p_{i}" for i in range(num_models)] + ["mean", "std", "max"]
            + (["video"] if with_video else []) + ["rank"])


def _descending_order(values):
    """Each row's column order by descending value, ties to the lower column:
    argsort(-values, kind="stable"), by one sort of unique integer keys (the
    value's order key above the column index): ~3x faster on 1000 columns.
    """
    bits = max(1, int(values.shape[1] - 1).bit_length())
    keys = np.uint64(0xFFFFFFFF) - submission.order_keys(
        values.astype(np.float32)).astype(np.uint64)
    keys = (keys << np.uint64(bits)) | np.arange(values.shape[1],
                                                 dtype=np.uint64)
    return (np.sort(keys, axis=1) & np.uint64((1 << bits) - 1)).astype(np.int64)


class FeatureSource:
    """Feature blocks over compatible caches (one per model)."""

    def __init__(self, caches):
        self.caches = caches
        self.first = caches[0]
        self.class_ids = list(self.first.class_ids)
        self.video_sources = []
        for cache in caches:
            if not cache.has_videos():
                continue
            position = {c: i for i, c in enumerate(cache.video_class_ids)}
            columns = np.array([position.get(c, -1) for c in self.class_ids])
            self.video_sources.append(
                (cache.video_probs, cache.segment_video_rows(), columns))
        self.with_video = bool(self.video_sources)
        self.names = feature_names(len(caches), self.with_video)

    def block(self, rows, picked=None):
        """[len(rows) * C, F] float32 features of segment `rows` (sorted);
        only the pairs where the flat bool `picked` [len(rows) * C] is set."""
        probs = np.stack([np.asarray(c.segment_probs[rows], np.float32)
                          for c in self.caches])  # [M, b, C]
        b, c = probs.shape[1:]
        columns = [probs[i].ravel() for i in range(len(self.caches))]
        mean = probs.mean(axis=0)
        columns += [mean.ravel(), probs.std(axis=0).ravel(),
                    probs.max(axis=0).ravel()]
        if self.with_video:
            video = np.zeros((b, c), np.float32)
            for video_probs, video_rows, class_columns in self.video_sources:
                values = np.asarray(video_probs[video_rows[rows]],
                                    np.float32)[:, np.maximum(class_columns, 0)]
                values[:, class_columns < 0] = np.nan
                video += values
            columns.append((video / len(self.video_sources)).ravel())
        order = _descending_order(mean)
        rank = np.empty((b, c), np.float32)
        np.put_along_axis(rank, order, np.arange(c, dtype=np.float32)[None, :],
                          axis=1)
        columns.append(rank.ravel())
        if picked is not None:
            columns = [column[picked] for column in columns]
        return np.stack(columns, axis=1)


def training_pairs(source, ground_truth, block_rows=4096):
    """(features [P, F], labels [P]) for the rated pairs found in the caches."""
    row_of = {s: i for i, s in enumerate(source.first.segment_ids.tolist())}
    column_of = {c: i for i, c in enumerate(source.class_ids)}
    pairs, skipped = [], 0
    for class_id, ratings in ground_truth.items():
        column = column_of.get(int(class_id))
        for segment_id, score in ratings.items():
            row = row_of.get(segment_id)
            if column is None or row is None:
                skipped += 1
                continue
            pairs.append((row, column, score > 0))
    if skipped:
        logging.warning("%d rated pairs are not in the caches; left out", skipped)
    if not pairs:
        raise ValueError("no rated (segment, class) pair of the labels is in "
                         f"the caches {[c.path for c in source.caches]}")
    pairs = np.array(pairs, dtype=np.int64)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    num_classes = len(source.class_ids)
    features, labels = [], []
    unique_rows = np.unique(pairs[:, 0])
    for start in range(0, len(unique_rows), block_rows):
        rows = unique_rows[start:start + block_rows]
        block = source.block(rows)
        chosen = pairs[(pairs[:, 0] >= rows[0]) & (pairs[:, 0] <= rows[-1])]
        local = np.searchsorted(rows, chosen[:, 0])
        features.append(block[local * num_classes + chosen[:, 1]])
        labels.append(chosen[:, 2])
    return np.concatenate(features), np.concatenate(labels).astype(np.float32)


def train(train_caches, ground_truth, stacker_dir, num_trees=200,
          learning_rate=0.05, num_leaves=31, min_data_in_leaf=20, seed=0):
    """Fit the stacker on the rated pairs; write it to `stacker_dir`."""
    lightgbm = _lightgbm()
    source = FeatureSource(ensemble.open_compatible(train_caches))
    features, labels = training_pairs(source, ground_truth)
    if labels.min() == labels.max():
        raise ValueError("the rated pairs are all positive or all negative: "
                         "nothing to learn")
    logging.info("stacker: %d rated pairs (%d positive), features %s",
                 len(labels), int(labels.sum()), source.names)
    params = {"objective": "binary", "learning_rate": learning_rate,
              "num_leaves": num_leaves, "min_data_in_leaf": min_data_in_leaf,
              "seed": seed, "deterministic": True, "num_threads": os.cpu_count() or 1,
              "verbose": -1}
    booster = lightgbm.train(params, lightgbm.Dataset(
        features, labels, feature_name=source.names), num_boost_round=num_trees)
    config = {"num_models": len(train_caches), "with_video": source.with_video,
              "feature_names": source.names, "params": params,
              "num_trees": num_trees, "num_pairs": int(len(labels)),
              "train_caches": [os.path.abspath(p) for p in train_caches]}
    save(booster, config, stacker_dir)
    return booster


def save(booster, config, stacker_dir):
    """Write the stacker so that a killed write leaves none `load` takes:
    the config (what `load` opens first) goes before the model is replaced
    and comes back last, each file whole (atomic renames). Before, a kill
    while writing left a torn model.txt, or a new model beside an older
    stacker's config, which load read as one stacker."""
    os.makedirs(stacker_dir, exist_ok=True)
    config_path = os.path.join(stacker_dir, CONFIG_FILE)
    if os.path.exists(config_path):
        os.remove(config_path)
    with atomic.atomic_path(os.path.join(stacker_dir, MODEL_FILE)) as tmp_path:
        booster.save_model(tmp_path)
    with atomic.atomic_open(config_path) as handle:
        json.dump(config, handle, indent=1)


def load(stacker_dir):
    """(lightgbm.Booster, config dict) saved by `train`."""
    lightgbm = _lightgbm()
    with open(os.path.join(stacker_dir, CONFIG_FILE)) as handle:
        config = json.load(handle)
    booster = lightgbm.Booster(model_file=os.path.join(stacker_dir, MODEL_FILE))
    return booster, config


def candidate_mask(caches, candidates, block_rows=PREDICT_BLOCK_ROWS):
    """[N, C] bool: each class's `candidates` best segments by the caches'
    mean probability, ties to the lower row (`submission.top_k_per_class`).

    The mean goes through a temporary float16 .npy file (one pass over the
    caches), ranked by column blocks from there. The mask is held in memory:
    N x C bytes (2 GB at the real test set's size).
    """
    first = caches[0]
    num_segments, num_classes = first.segment_probs.shape
    scratch = tempfile.mkdtemp(prefix="stacker_mean_")
    try:
        path = os.path.join(scratch, "mean.npy")
        writer = cache_lib.NpyRowWriter(path, (num_segments, num_classes))
        for _, rows in ensemble._weighted_blocks(  # pylint: disable=protected-access
                [c.segment_reader() for c in caches], [1.0] * len(caches),
                block_rows):
            writer.write(rows)
        writer.close()
        top = submission.top_k_per_class(cache_lib.NpyReader(path),
                                         min(candidates, num_segments))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    mask = np.zeros((num_segments, num_classes), bool)
    mask[top, np.arange(num_classes)[:, None]] = True
    return mask


def predict(stacker_dir, caches, output_cache, block_rows=PREDICT_BLOCK_ROWS,
            candidates=None):
    """Score the pairs of `caches` (the training models, same order): all,
    or each class's `candidates` best by mean probability (others get 0)."""
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    booster, config = load(stacker_dir)
    if len(caches) != config["num_models"]:
        raise ValueError(f"the stacker in {stacker_dir} was trained on "
                         f"{config['num_models']} caches, got {len(caches)}")
    opened = ensemble.open_compatible(caches)
    source = FeatureSource(opened)
    if source.names != config["feature_names"]:
        raise ValueError(f"the stacker in {stacker_dir} uses features "
                         f"{config['feature_names']}; these caches give "
                         f"{source.names} (video probabilities present in one "
                         "and not the other?)")
    first = source.first
    with_videos = [c for c in opened if c.has_videos()]
    video_first = with_videos[0] if with_videos else None
    num_segments, num_classes = first.segment_probs.shape
    meta = {"kind": "stacker", "stacker_dir": os.path.abspath(stacker_dir),
            "stacked": [os.path.abspath(c.path) for c in opened],
            "fingerprint": ensemble._fingerprint(  # pylint: disable=protected-access
                opened, [(os.path.abspath(stacker_dir), candidates)]
                * len(opened)),
            "input_files": first.meta.get("input_files", []),
            "candidates": candidates}
    chosen = candidate_mask(opened, candidates) if candidates else None
    with cache_lib.CacheWriter(
            output_cache, num_segments, first.class_ids,
            len(video_first.video_ids) if video_first else None,
            video_first.video_class_ids if video_first else None) as writer:
        for start in range(0, num_segments, block_rows):
            rows = np.arange(start, min(start + block_rows, num_segments))
            if chosen is None:
                scores = booster.predict(source.block(rows))
            else:
                picked = chosen[rows].ravel()
                scores = np.zeros(len(picked))
                if picked.any():
                    scores[picked] = booster.predict(
                        source.block(rows, picked))
            writer.write_segments(first.segment_ids[rows],
                                  scores.reshape(len(rows), num_classes))
        if video_first is not None:
            weights = [1.0] * len(with_videos)
            for start, rows in ensemble._weighted_blocks(  # pylint: disable=protected-access
                    [c.video_reader() for c in with_videos], weights,
                    cache_lib.BLOCK_ROWS):
                writer.write_videos(
                    video_first.video_ids[start:start + len(rows)], rows)
        return writer.commit(meta)
