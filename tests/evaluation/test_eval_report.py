"""Cache evaluation (MAP@K, GAP@k) and the PNG report."""


import numpy as np
import pytest

from command_runner import run_command
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.evaluation import evaluate
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import submission
from yt8m_segments.data import synthetic



def command(*args):
    return run_command("eval", *args).stdout.strip().splitlines()


# ---------------------------------------------------------------- GAP@k

def slow_gap(predictions, labels, k):
    """The starter code's recipe, one Python loop at a time."""
    pooled = []
    for video in range(predictions.shape[0]):
        order = sorted(range(predictions.shape[1]),
                       key=lambda c: -float(predictions[video, c]))[:k]
        pooled.extend((float(predictions[video, c]), bool(labels[video, c]))
                      for c in order)
    pooled.sort(key=lambda pair: -pair[0])
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(pooled, start=1):
        if positive:
            hits += 1
            total += hits / rank
    return total / max(int(np.sum(labels)), 1)


@pytest.mark.parametrize("seed,k", [(0, 20), (1, 3), (2, 1)])
def test_gap_matches_the_slow_reference(seed, k):
    rng = np.random.default_rng(seed)
    # Rounded scores: plenty of ties, inside and across videos.
    predictions = np.round(rng.random((40, 30)), 1).astype(np.float16)
    labels = rng.random((40, 30)) < 0.1
    assert metrics.gap_at_k(predictions, labels, k, block_rows=7) == pytest.approx(
        slow_gap(predictions, labels, k), abs=1e-12)


def test_gap_edge_cases():
    predictions = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    labels = np.array([[1, 0, 0], [0, 1, 0]])
    assert metrics.gap_at_k(predictions, labels, 1) == 1.0
    # A positive never predicted counts in the denominator.
    assert metrics.gap_at_k(predictions, labels, 1, num_positives=4) == 0.5
    # Pooled top-2s: 0.9 (-), 0.8 (-), 0.5 (+), 0.3 (-); video 1's positive
    # (0.2) is not in its top 2 but still counts as a positive.
    labels = np.array([[0, 0, 1], [1, 0, 0]])
    assert metrics.gap_at_k(predictions, labels, 2) == pytest.approx((1 / 3) / 2)
    assert metrics.gap_at_k(predictions, labels, 3) == pytest.approx(
        (1 / 3 + 2 / 5) / 2)
    assert metrics.gap_at_k(predictions, np.zeros((2, 3)), 2) == 0.0


# ---------------------------------------------------------------- MAP@K of a cache

@pytest.fixture
def scored_cache(tmp_path):
    """A cache with video probabilities, a ground truth CSV and a submission."""
    rng = np.random.default_rng(4)
    videos = [f"vid{i}" for i in range(30)]
    segment_ids = np.array([f"{v}:{5 * s}" for v in videos for s in range(6)])
    class_ids = [12, 4, 30, 7, 19]
    truth = rng.random((len(segment_ids), len(class_ids))) < 0.25
    probs = np.clip(0.3 * truth + 0.7 * rng.random(truth.shape), 0, 1)
    probs = np.round(probs, 2).astype(np.float16)  # ties
    video_class_ids = list(range(40))
    video_probs = rng.random((len(videos), 40)).astype(np.float16)
    path = cache_lib.write_cache(
        str(tmp_path / "cache"), segment_ids, probs, class_ids,
        {"fingerprint": "f"}, video_ids=videos, video_probs=video_probs,
        video_class_ids=video_class_ids)
    ground_truth = {}
    rated = rng.random(truth.shape) < 0.4
    for row, column in zip(*np.nonzero(rated)):
        ground_truth.setdefault(class_ids[column], {})[segment_ids[row]] = float(
            truth[row, column])
    ground_truth.setdefault(99, {})["vid0:0"] = 1.0  # a class the cache lacks
    truth_file = str(tmp_path / "truth.csv")
    submission.write_ground_truth(truth_file, ground_truth)
    return tmp_path, path, truth_file, probs, segment_ids, class_ids


@pytest.mark.parametrize("k", [1, 17, 50, 1000])
def test_cache_scores_as_the_equivalent_submission(scored_cache, k):
    tmp_path, path, truth_file, probs, segment_ids, class_ids = scored_cache
    submission_file = str(tmp_path / f"submission{k}.csv")
    submission.write_submission(submission_file, segment_ids, probs, class_ids, k)
    expected = evaluate.evaluate_submission(submission_file, truth_file, k)
    value, per_class = evaluate.evaluate_cache(
        path, submission.read_ground_truth(truth_file), k)
    assert value == expected
    assert per_class[99] == 0.0 and 0 < value < 1


def test_command_line_cache_mode_with_per_class_file(scored_cache):
    tmp_path, path, truth_file, probs, segment_ids, class_ids = scored_cache
    submission_file = str(tmp_path / "submission.csv")
    submission.write_submission(submission_file, segment_ids, probs, class_ids, 40)
    from_submission = command(f"--submission_file={submission_file}",
                              f"--ground_truth_file={truth_file}",
                              "--segment_max_pred=40")[-1]
    from_cache = command(f"--cache_dir={path}", f"--ground_truth_file={truth_file}",
                         "--segment_max_pred=40",
                         f"--per_class_file={tmp_path / 'per_class.csv'}")[-1]
    assert from_cache == from_submission and from_cache.startswith("MAP@40 ")
    lines = (tmp_path / "per_class.csv").read_text().splitlines()
    assert lines[0] == "class,ap,num_positives"
    assert len(lines) - 1 == len(submission.read_ground_truth(truth_file))


def test_refinement_keeping_every_class_changes_nothing(scored_cache):
    _, path, truth_file, *_ = scored_cache
    ground_truth = submission.read_ground_truth(truth_file)
    plain, _ = evaluate.evaluate_cache(path, ground_truth, 30)
    curve = evaluate.map_against_topk(path, ground_truth, 30, (1, 5, 40))
    assert [t for t, _ in curve] == [1, 5, 40]
    assert curve[-1][1] == pytest.approx(plain)  # top-40 of 40 classes: all kept
    assert all(0.0 <= value <= 1.0 for _, value in curve)
    line = command(f"--cache_dir={path}", f"--ground_truth_file={truth_file}",
                   "--segment_max_pred=30", "--refine=topk", "--refine_topk=1")[-1]
    assert line == f"MAP@30 {curve[0][1]:.6f}"
    assert curve[0][1] != pytest.approx(plain)


# ---------------------------------------------------------------- records

@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    summary = synthetic.generate(str(root), 2, 12, 2, seed=2, num_classes=60,
                                 num_active_classes=8, num_segment_classes=4,
                                 min_frames=10, max_frames=30,
                                 num_files_per_split=2)
    return root, summary


def test_labels_read_from_records(tiny_records):
    root, summary = tiny_records
    files = sorted(str(p) for p in root.glob("validate-*.tfrecord"))
    video_labels, ground_truth = evaluate.read_record_labels(files)
    assert len(video_labels) == 12
    pairs = sum(len(r) for r in ground_truth.values())
    positives = sum(s > 0 for r in ground_truth.values() for s in r.values())
    assert pairs == summary["validate"]["positives"] + summary["validate"]["negatives"]
    assert positives == summary["validate"]["positives"]
    assert set(ground_truth) <= set(summary["segment_class_ids"])


def test_video_cache_gap_from_records(tiny_records, tmp_path):
    root, _ = tiny_records
    files = sorted(str(p) for p in root.glob("validate-*.tfrecord"))
    video_labels, _ = evaluate.read_record_labels(files)
    videos = sorted(video_labels)
    rng = np.random.default_rng(0)
    labels = np.zeros((len(videos), 60), bool)
    for row, video in enumerate(videos):
        labels[row, video_labels[video]] = True
    video_probs = (0.5 * labels + 0.5 * rng.random(labels.shape)).astype(np.float16)
    segment_ids = np.array([f"{v}:0" for v in videos])
    path = cache_lib.write_cache(
        str(tmp_path / "videos"), segment_ids,
        np.zeros((len(videos), 1), np.float16), [0], {}, video_ids=videos,
        video_probs=video_probs, video_class_ids=list(range(60)))
    lines = command(f"--video_cache={path}",
                    f"--eval_data_pattern={root}/validate-*.tfrecord")
    name, value = lines[-1].split()
    assert name == "GAP@20"
    assert float(value) == pytest.approx(
        metrics.gap_at_k(video_probs, labels, 20), abs=1e-6)
    assert float(value) > 0.9


# ---------------------------------------------------------------- report

def _png_size(path):
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_png(scored_cache, tmp_path):
    pytest.importorskip("matplotlib")
    _, path, truth_file, probs, segment_ids, class_ids = scored_cache
    report = tmp_path / "report.png"
    lines = command(f"--cache_dir={path}", f"--ground_truth_file={truth_file}",
                    "--segment_max_pred=40", f"--report_file={report}")
    assert lines[-1].startswith("MAP@40 ")
    width, height = _png_size(report)
    assert width > 500 and height > 300

    # Without video probabilities: the histogram alone.
    plain = cache_lib.write_cache(str(tmp_path / "plain"), segment_ids, probs,
                                  class_ids, {})
    ground_truth = submission.read_ground_truth(truth_file)
    assert evaluate.map_against_topk(plain, ground_truth, 40) is None
    from yt8m_segments.evaluation import report as report_lib
    _, per_class = evaluate.evaluate_cache(plain, ground_truth, 40)
    report_lib.write_report(str(tmp_path / "plain.png"), per_class, 40, None)
    _png_size(tmp_path / "plain.png")
