"""Weighted average of probability caches that rank the same segments and
classes in the same order: computed in float32 per row block and streamed
into a new fp16 cache (video-level probabilities averaged over the caches
that have them), so no cache is held whole; with the comma-list, weight and
compatible-cache helpers the ensemble and stacker commands share.
"""

import hashlib
import os

from absl import logging

import numpy as np

from yt8m_segments.postprocess import cache as cache_lib


def parse_list(text, what):
    values = [value.strip() for value in (text or "").split(",") if value.strip()]
    if not values:
        raise ValueError(f"--{what} is empty")
    return values


def parse_weights(text, count):
    """Weights for `count` caches: the given ones (>= 0, not all 0), else equal."""
    if not text:
        return [1.0 / count] * count
    try:
        weights = [float(w) for w in parse_list(text, "weights")]
    except ValueError:
        raise ValueError(f"--weights must be comma-separated numbers, got {text!r}") from None
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} caches")
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all 0: {weights}")
    return weights


def open_compatible(paths):
    """Open caches and check every one against the first (ValueError naming both)."""
    if not paths:
        raise ValueError("no cache given")
    caches = [cache_lib.ProbabilityCache.open(path) for path in paths]
    for other in caches[1:]:
        caches[0].check_compatible(other)
    return caches


def _fingerprint(caches, weights):
    digest = hashlib.sha256()
    for cache, weight in zip(caches, weights):
        digest.update(f"{cache.fingerprint}:{weight!r};".encode())
    return digest.hexdigest()


def _weighted_blocks(readers, weights, block_rows):
    """(start, float32 weighted mean rows) over readers in lockstep."""
    total = np.float32(sum(weights))
    iterators = [reader.row_blocks(block_rows) for reader in readers]
    for blocks in zip(*iterators):
        start = blocks[0][0]
        mean = np.zeros(blocks[0][1].shape, np.float32)
        for (_, rows), weight in zip(blocks, weights):
            mean += np.float32(weight) * rows.astype(np.float32)
        mean /= total
        yield start, mean


def ensemble_caches(paths, output_path, weights=None,
                    block_rows=cache_lib.BLOCK_ROWS):
    """Write the weighted average of the caches at `paths` to `output_path`."""
    weights = list(weights) if weights is not None else [1.0 / len(paths)] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"{len(weights)} weights for {len(paths)} caches")
    output_abs = os.path.abspath(output_path)
    if any(os.path.abspath(p) == output_abs for p in paths):
        raise ValueError(f"--output_cache {output_path} is one of the inputs")
    caches = open_compatible(paths)
    first = caches[0]
    with_videos = [(c, w) for c, w in zip(caches, weights) if c.has_videos()]
    if with_videos and sum(w for _, w in with_videos) <= 0:
        with_videos = []
    if with_videos and len(with_videos) < len(caches):
        logging.warning("only %d of %d caches have video-level probabilities; "
                        "averaging those", len(with_videos), len(caches))
    video_first = with_videos[0][0] if with_videos else None
    meta = {
        "kind": "ensemble",
        "ensemble_of": [os.path.abspath(c.path) for c in caches],
        "weights": weights,
        "member_fingerprints": [c.fingerprint for c in caches],
        "fingerprint": _fingerprint(caches, weights),
        "input_files": first.meta.get("input_files", []),
    }
    with cache_lib.CacheWriter(
            output_path, len(first.segment_ids), first.class_ids,
            len(video_first.video_ids) if video_first else None,
            video_first.video_class_ids if video_first else None) as writer:
        for start, rows in _weighted_blocks(
                [c.segment_reader() for c in caches], weights, block_rows):
            writer.write_segments(first.segment_ids[start:start + len(rows)], rows)
        if video_first is not None:
            for start, rows in _weighted_blocks(
                    [c.video_reader() for c, _ in with_videos],
                    [w for _, w in with_videos], block_rows):
                writer.write_videos(video_first.video_ids[start:start + len(rows)],
                                    rows)
        return writer.commit(meta)
