"""Per-class top-K, the CSV files, and the eval CLI end to end."""

import os

import numpy as np
import pytest

from command_runner import run_command
from yt8m_segments import atomic
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import submission



def reference_top_k(scores, k):
    return np.argsort(-scores.astype(np.float64), axis=0, kind="stable")[:k].T


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64])
def test_top_k_matches_stable_argsort(seed, chunk_rows):
    rng = np.random.default_rng(seed)
    num_segments, num_classes = int(rng.integers(1, 300)), int(rng.integers(1, 20))
    # Integer-valued float16: heavy ties, including at the k-th value; -0
    # ties +0, and thresholds at or below 0 compare keys, not bits.
    scores = rng.integers(-2, 4, size=(num_segments, num_classes)).astype(np.float16)
    scores[rng.random(scores.shape) < 0.1] = -0.0
    for k in (1, 2, num_segments // 3 + 1, num_segments, num_segments + 10):
        got = submission.top_k_per_class(scores, k, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(got, reference_top_k(scores, k))


def test_top_k_memmap_float32_and_distinct(tmp_path):
    rng = np.random.default_rng(0)
    scores = np.lib.format.open_memmap(str(tmp_path / "s.npy"), mode="w+",
                                       dtype=np.float16, shape=(500, 9))
    scores[:] = rng.random((500, 9))
    np.testing.assert_array_equal(submission.top_k_per_class(scores, 40, 4),
                                  reference_top_k(np.asarray(scores), 40))
    distinct = rng.random((200, 5)).astype(np.float32)
    np.testing.assert_array_equal(submission.top_k_per_class(distinct, 17),
                                  reference_top_k(distinct, 17))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_sampled_thresholds_and_fallback_passes_are_exact(monkeypatch, seed, dtype):
    """A sample of a few rows that holds every row's best scores misjudges
    each class's threshold: the fallback passes (one class each, by the
    memory budget) must still give the exact ranking, with negatives, -0
    against +0, and ties."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(submission, "SAMPLE_ROWS", 8)
    monkeypatch.setattr(submission, "SAMPLE_RUN", 2)
    monkeypatch.setattr(submission, "L2_SCORES", 12)  # steps of 2 rows in a chunk
    passes = []
    real_pass = submission._pass
    monkeypatch.setattr(submission, "_pass", lambda *a: passes.append(1) or real_pass(*a))
    num_segments, num_classes = 301, 5
    scores = rng.choice([-2.0, -0.0, 0.0, 1.0, 3.0], size=(num_segments, num_classes))
    sampled = np.concatenate([np.arange(s, s + 2) for s, _ in
                              submission._sample_runs(num_segments)])
    scores[sampled] = 9.0
    scores = scores.astype(dtype)
    for k in (1, 17, 40, num_segments):
        passes.clear()
        got = submission.top_k_per_class(scores, k, chunk_rows=10, memory_budget=1)
        np.testing.assert_array_equal(got, reference_top_k(scores, k))
        if 8 < k < num_segments:
            assert len(passes) == 1 + num_classes  # every class misjudged


@pytest.mark.parametrize("nan_bits", [0x7E00, 0xFE01])
def test_a_nan_outside_the_sample_is_refused(monkeypatch, nan_bits):
    monkeypatch.setattr(submission, "SAMPLE_ROWS", 4)
    monkeypatch.setattr(submission, "SAMPLE_RUN", 2)
    scores = np.ones((50, 3), np.float16)
    scores.view(np.uint16)[25, 1] = nan_bits  # +NaN, or -NaN (its sign bit set)
    assert 25 not in np.concatenate([np.arange(a, b) for a, b in
                                     submission._sample_runs(50)])
    with pytest.raises(ValueError, match="NaN"):
        submission.top_k_per_class(scores, 5, chunk_rows=10)


def test_top_k_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        submission.top_k_per_class(np.array([[1.0], [np.nan]]), 1)
    with pytest.raises(ValueError, match="at least 1"):
        submission.top_k_per_class(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="shape"):
        submission.top_k_per_class(np.zeros(3), 1)


def _example():
    rng = np.random.default_rng(3)
    segment_ids = [f"vid{i // 5}:{5 * (i % 5)}" for i in range(60)]
    scores = rng.integers(0, 5, size=(60, 4)).astype(np.float16)
    class_ids = [42, 3, 17, 1000]
    return segment_ids, scores, class_ids


def test_submission_round_trip(tmp_path):
    segment_ids, scores, class_ids = _example()
    path = str(tmp_path / "sub.csv")
    submission.write_submission(path, segment_ids, scores, class_ids, 7)
    lines = open(path).read().splitlines()
    assert lines[0] == "Class,Segments"
    assert [int(line.split(",")[0]) for line in lines[1:]] == [3, 17, 42, 1000]
    assert not [name for name in os.listdir(tmp_path) if atomic.is_temporary(name)]
    expected = metrics.ranked_from_scores(segment_ids, scores, class_ids, 7)
    assert submission.read_submission(path) == expected
    assert all(len(v) == 7 for v in expected.values())


def _reference_csv(segment_ids, scores, class_ids, k):
    """The submission CSV by plain Python formatting, classes ascending."""
    top = reference_top_k(scores, k)
    lines = ["Class,Segments\n"]
    for c in np.argsort(class_ids, kind="stable"):
        lines.append(f"{class_ids[c]}," + " ".join(segment_ids[r] for r in top[c]) + "\n")
    return "".join(lines).encode()


@pytest.mark.parametrize("seed", range(6))
def test_csv_bytes_equal_python_formatting(tmp_path, seed):
    """Ties, K above the number of segments, no segments at all, ids of
    varied lengths (non-ASCII, a NUL inside one, longer than 16 bytes)."""
    rng = np.random.default_rng(seed)
    num_segments = [0, 1, 7, 40, 150, 333][seed]
    num_classes = int(rng.integers(1, 9))
    videos = ["a", "Zz9", "vidé", "long_video_name_x", "n\0ul", "ü€"]
    segment_ids = [f"{videos[rng.integers(len(videos))]}{i}:{5 * int(rng.integers(0, 60))}"
                   for i in range(num_segments)]
    scores = rng.integers(0, 4, size=(num_segments, num_classes)).astype(np.float16)
    class_ids = rng.choice(4000, num_classes, replace=False)
    for k in (1, 3, num_segments + 5):
        path = str(tmp_path / f"s{k}.csv")
        submission.write_submission(path, segment_ids, scores, class_ids, k,
                                    chunk_rows=3)
        with open(path, "rb") as handle:
            assert handle.read() == _reference_csv(segment_ids, scores, class_ids, k)


def test_ground_truth_round_trip(tmp_path):
    ground_truth = {5: {"a:0": 1.0, "b:5": 0.0}, 2: {"a:0": 0.0}}
    path = str(tmp_path / "gt.csv")
    submission.write_ground_truth(path, ground_truth)
    assert submission.read_ground_truth(path) == ground_truth


@pytest.mark.parametrize("body,line,message", [
    ("3,a:0 b:5\n17 a:0\n", 3, "missing comma"),
    ("x3,a:0\n", 2, "bad class id"),
    ("3,a:0 b5\n", 2, "bad segment 'b5'"),
    ("3,a:0 b:x\n", 2, "bad segment 'b:x'"),
    ("3,a:0\n3,b:0\n", 3, "listed twice"),
    ("3,a:0 a:0\n", 2, "listed twice"),
])
def test_malformed_submission_names_file_and_line(tmp_path, body, line, message):
    path = str(tmp_path / "bad.csv")
    with open(path, "w") as handle:
        handle.write("Class,Segments\n" + body)
    with pytest.raises(ValueError, match=f"bad.csv:{line}: .*{message}"):
        submission.read_submission(path)


def test_submission_header_and_empty_class(tmp_path):
    path = str(tmp_path / "sub.csv")
    with open(path, "w") as handle:
        handle.write("Class,Segments\n3,\n4, a:0  b:5 \n")
    assert submission.read_submission(path) == {3: [], 4: ["a:0", "b:5"]}
    with open(path, "w") as handle:
        handle.write("3,a:0\n")
    with pytest.raises(ValueError, match="sub.csv:1: expected header"):
        submission.read_submission(path)


@pytest.mark.parametrize("body,line,message", [
    ("a:0,3\n", 2, "expected 3 fields"),
    ("a:0,3,1.0\nb0,3,1.0\n", 3, "bad segment id"),
    ("a:0,c,1.0\n", 2, "bad class id"),
    ("a:0,3,yes\n", 2, "bad score"),
    ("a:0,3,1.0\na:0,3,0.0\n", 3, "rated twice"),
])
def test_malformed_ground_truth_names_file_and_line(tmp_path, body, line, message):
    path = str(tmp_path / "gt.csv")
    with open(path, "w") as handle:
        handle.write("segment_id,class,score\n" + body)
    with pytest.raises(ValueError, match=f"gt.csv:{line}: .*{message}"):
        submission.read_ground_truth(path)


def test_eval_cli_end_to_end(tmp_path):
    segment_ids, scores, class_ids = _example()
    rng = np.random.default_rng(4)
    ground_truth = {c: {s: float(rng.random() < 0.5)
                        for s in rng.choice(segment_ids, 20, replace=False)}
                    for c in class_ids + [7]}
    sub_path, gt_path = str(tmp_path / "sub.csv"), str(tmp_path / "gt.csv")
    per_class_path = str(tmp_path / "per_class.csv")
    submission.write_submission(sub_path, segment_ids, scores, class_ids, 20)
    submission.write_ground_truth(gt_path, ground_truth)
    result = run_command("eval", f"--submission_file={sub_path}",
                         f"--ground_truth_file={gt_path}", "--segment_max_pred=12",
                         f"--per_class_file={per_class_path}")
    ranked = submission.read_submission(sub_path)
    expected = metrics.segment_map_at_k(ranked, ground_truth, 12)
    assert result.stdout.splitlines()[-1] == f"MAP@12 {expected:.6f}"
    per_class = metrics.segment_ap_per_class(ranked, ground_truth, 12)
    positives = metrics.num_positives(ground_truth)
    assert open(per_class_path).read().splitlines() == ["class,ap,num_positives"] + [
        f"{c},{per_class[c]:.6f},{positives[c]}" for c in sorted(per_class)]
