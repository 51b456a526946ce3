"""Probability caches: round trip, atomicity, merge, compatibility."""

import os
import subprocess

import numpy as np
import pytest

from yt8m_segments import atomic
from yt8m_segments.postprocess import cache


def _arrays(num_segments=7, num_classes=4, seed=0, first_video=0):
    rng = np.random.default_rng(seed)
    segment_ids = [f"v{first_video + i // 3}:{5 * (i % 3)}" for i in range(num_segments)]
    video_ids = sorted({s.split(":")[0] for s in segment_ids})
    return dict(
        segment_ids=segment_ids,
        segment_probs=rng.random((num_segments, num_classes)).astype(np.float16),
        class_ids=[11, 3, 7, 5][:num_classes],
        video_ids=video_ids,
        video_probs=rng.random((len(video_ids), 6)).astype(np.float16),
        video_class_ids=[3, 5, 7, 11, 13, 17])


def _write(path, meta=None, videos=True, **kwargs):
    a = _arrays(**kwargs)
    if not videos:
        a = {k: v for k, v in a.items() if not k.startswith("video")}
    cache.write_cache(str(path), meta=meta or {"fingerprint": "f1"}, **a)
    return a


def test_round_trip_with_and_without_videos(tmp_path):
    a = _write(tmp_path / "c", meta={"fingerprint": "f1", "train_dir": "t"})
    opened = cache.ProbabilityCache.open(str(tmp_path / "c"))
    assert isinstance(opened.segment_probs, np.memmap)
    assert opened.segment_probs.mode == "r" and opened.segment_probs.dtype == np.float16
    np.testing.assert_array_equal(opened.segment_probs, a["segment_probs"])
    assert opened.segment_ids.tolist() == a["segment_ids"]
    assert opened.class_ids == a["class_ids"]
    np.testing.assert_array_equal(opened.video_probs, a["video_probs"])
    assert opened.video_ids.tolist() == a["video_ids"]
    assert opened.video_class_ids == a["video_class_ids"]
    assert opened.meta["train_dir"] == "t" and opened.meta["num_segments"] == 7
    assert opened.fingerprint == "f1" and "created" in opened.meta
    np.testing.assert_array_equal(opened.segment_video_rows(),
                                  [0, 0, 0, 1, 1, 1, 2])
    reader = opened.segment_reader()
    np.testing.assert_array_equal(reader.columns_transposed([2, 0], block_rows=3),
                                  a["segment_probs"][:, [2, 0]].T)
    # np.load sees a plain .npy
    np.testing.assert_array_equal(
        np.load(str(tmp_path / "c" / cache.SEGMENT_PROBS)), a["segment_probs"])

    _write(tmp_path / "d", videos=False)
    plain = cache.ProbabilityCache.open(str(tmp_path / "d"))
    assert plain.video_probs is None and plain.video_ids is None
    assert not plain.has_videos()


def test_an_unfinished_write_leaves_no_readable_cache(tmp_path):
    path = str(tmp_path / "c")
    a = _arrays()
    writer = cache.CacheWriter(path, 7, a["class_ids"])
    writer.write_segments(a["segment_ids"], a["segment_probs"])
    writer._close_files()  # a killed job: data written, never committed
    with pytest.raises(ValueError, match="never committed"):
        cache.ProbabilityCache.open(path)
    # A failing rewrite of a finished cache de-commits it and cleans up.
    _write(tmp_path / "e")
    with pytest.raises(RuntimeError):
        with cache.CacheWriter(str(tmp_path / "e"), 7, a["class_ids"]) as w:
            w.write_segments(a["segment_ids"][:3], a["segment_probs"][:3])
            raise RuntimeError("killed")
    with pytest.raises(ValueError, match="never committed"):
        cache.ProbabilityCache.open(str(tmp_path / "e"))
    assert not [n for n in os.listdir(tmp_path / "e") if ".tmp-" in n]
    # Committing with too few rows is an error, not a short cache.
    with pytest.raises(ValueError, match="rows written"):
        with cache.CacheWriter(str(tmp_path / "f"), 7, a["class_ids"]) as w:
            w.write_segments(a["segment_ids"][:3], a["segment_probs"][:3])
            w.commit({})
    with pytest.raises(ValueError):
        cache.ProbabilityCache.open(str(tmp_path / "f"))



def test_a_rewrite_removes_what_a_killed_writer_left(tmp_path):
    """A writer SIGKILLed before commit strands `<name>.tmp-<pid>` files
    (found by bench/kill_points.py); the next writer of the directory
    removes them."""
    pid = int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True,
                             text=True, check=True).stdout)
    path = tmp_path / "c"
    os.makedirs(path)
    for name in (cache.SEGMENT_PROBS, cache.VIDEO_IDS, cache.META):
        open(path / f"{name}.tmp-{pid}", "w").close()
    _write(path)
    assert not [n for n in os.listdir(path) if atomic.is_temporary(n)]

def test_missing_cache_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no probability cache"):
        cache.ProbabilityCache.open(str(tmp_path / "nothing"))


def test_merge_concatenates_shards_streaming(tmp_path):
    a = _write(tmp_path / "s0", num_segments=7, seed=0, first_video=0)
    b = _write(tmp_path / "s1", num_segments=5, seed=1, first_video=10)
    cache.merge_caches([str(tmp_path / "s0"), str(tmp_path / "s1")],
                       str(tmp_path / "m"), block_rows=2)
    merged = cache.ProbabilityCache.open(str(tmp_path / "m"))
    np.testing.assert_array_equal(
        merged.segment_probs, np.concatenate([a["segment_probs"], b["segment_probs"]]))
    assert merged.segment_ids.tolist() == a["segment_ids"] + b["segment_ids"]
    np.testing.assert_array_equal(
        merged.video_probs, np.concatenate([a["video_probs"], b["video_probs"]]))
    assert merged.video_ids.tolist() == a["video_ids"] + b["video_ids"]
    assert merged.meta["num_segments"] == 12 and merged.fingerprint == "f1"
    assert len(merged.meta["merged_from"]) == 2


def test_merge_refuses_mismatches(tmp_path):
    _write(tmp_path / "s0")
    _write(tmp_path / "other_model", meta={"fingerprint": "f2"}, first_video=10)
    with pytest.raises(ValueError, match="different models"):
        cache.merge_caches([str(tmp_path / "s0"), str(tmp_path / "other_model")],
                           str(tmp_path / "m"))
    _write(tmp_path / "fewer", num_classes=3, first_video=10)
    with pytest.raises(ValueError, match="different class ids"):
        cache.merge_caches([str(tmp_path / "s0"), str(tmp_path / "fewer")],
                           str(tmp_path / "m"))
    with pytest.raises(ValueError, match="segment 'v0:0' is in both"):
        cache.merge_caches([str(tmp_path / "s0"), str(tmp_path / "s0")],
                           str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m" / cache.META)


def test_check_compatible(tmp_path):
    _write(tmp_path / "a")
    _write(tmp_path / "b", seed=5)
    _write(tmp_path / "fewer", num_classes=3)
    _write(tmp_path / "shifted", first_video=1)
    _write(tmp_path / "short", num_segments=6)
    a, b, fewer, shifted, short = (cache.ProbabilityCache.open(str(tmp_path / n))
                                   for n in ("a", "b", "fewer", "shifted", "short"))
    a.check_compatible(b)  # same ids and classes, other scores: fine
    with pytest.raises(ValueError, match="different class ids"):
        a.check_compatible(fewer)
    with pytest.raises(ValueError, match=r"different segment ids: 7 rows differ, "
                       r"first row 0: 'v0:0' vs 'v1:0'"):
        a.check_compatible(shifted)
    with pytest.raises(ValueError, match="different segments: 7 vs 6"):
        a.check_compatible(short)


def test_model_fingerprint_changes_with_weights():
    import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    first = cache.model_fingerprint(model, {"a": 1})
    assert first == cache.model_fingerprint(model, {"a": 1})
    assert first != cache.model_fingerprint(model, {"a": 2})
    model.layers[0].kernel.assign(model.layers[0].kernel + 1.0)
    assert first != cache.model_fingerprint(model, {"a": 1})
