"""refine_choice.py on planted worlds: the grid against oracle, linear-like
and prior-only video models, the uninformative-model check, and the command
lines (eval --choose_refinement, inference --refine=auto)."""

import numpy as np
import pytest

from test_end_to_end import command
from yt8m_segments.postprocess import cache
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import refine_choice
from yt8m_segments.postprocess import submission

NUM_VIDEOS, SEGMENTS, VOCABULARY, CLASSES, K = 150, 8, 60, 20, 30


def _world(seed):
    """Videos with 1-4 labels from a Zipf-like prior over VOCABULARY classes
    (varied labels, a few frequent ones) and a weak segment model. Every
    segment of a video is rated for the video's labels, as the challenge
    rates them, so the segment model's hits in videos without the class are
    unrated pairs that take budget: what refinement can remove."""
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, VOCABULARY + 1) ** 0.8
    labels = np.zeros((NUM_VIDEOS, VOCABULARY), dtype=bool)
    for video in range(NUM_VIDEOS):
        labels[video, rng.choice(VOCABULARY, rng.integers(1, 5), replace=False,
                                 p=prior / prior.sum())] = True
    video_class_ids = 100 + np.arange(VOCABULARY)
    columns = rng.permutation(VOCABULARY)[:CLASSES]
    rows = np.repeat(np.arange(NUM_VIDEOS), SEGMENTS)
    rated = labels[rows][:, columns]
    shows = rated & (rng.random(rated.shape) < 0.5)
    video_ids = [f"vid{seed}x{v:03d}" for v in range(NUM_VIDEOS)]
    segment_ids = [f"{video_ids[v]}:{5 * s}" for v, s in
                   zip(rows, np.tile(np.arange(SEGMENTS), NUM_VIDEOS))]
    ground_truth = {}
    for i, j in zip(*np.nonzero(rated)):
        ground_truth.setdefault(int(video_class_ids[columns[j]]), {})[
            segment_ids[i]] = float(shows[i, j])
    noise = rng.random((3, *labels.shape))
    video_models = {
        "oracle": labels + 0.05 * noise[0],
        # Informative but noisy and leaning on the prior, as a linear model
        # of mean frames.
        "linear": 0.5 * labels * noise[1] + 3 * labels.mean(0) * noise[2],
        "prior": np.broadcast_to(labels.mean(0), labels.shape),
    }
    return {"segment_ids": segment_ids, "video_ids": video_ids,
            "class_ids": video_class_ids[columns],
            "video_class_ids": video_class_ids,
            "segment_probs": 0.35 * shows + 0.65 * rng.random(shows.shape),
            "ground_truth": ground_truth, "video_models": video_models}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """{(seed, video model): cache path} and each seed's ground truth CSV."""
    root = tmp_path_factory.mktemp("refine_choice")
    paths, truth_files = {}, {}
    for seed in (0, 1):
        world = _world(seed)
        truth_files[seed] = str(root / f"truth{seed}.csv")
        submission.write_ground_truth(truth_files[seed], world["ground_truth"])
        for name, video_probs in world["video_models"].items():
            paths[seed, name] = cache.write_cache(
                str(root / f"{name}{seed}"), world["segment_ids"],
                world["segment_probs"], world["class_ids"], {},
                world["video_ids"], np.clip(video_probs, 0, 1),
                world["video_class_ids"])
    return paths, truth_files


def _choose(caches, name, seed=0):
    paths, truth_files = caches
    opened = cache.ProbabilityCache.open(paths[seed, name])
    ground_truth = submission.read_ground_truth(truth_files[seed])
    table, best = refine_choice.choose(opened, ground_truth, K)
    by_name = {(options.mode, options.parameters): value for options, value, _ in table}
    return opened, table, best, by_name


@pytest.mark.parametrize("name", ["oracle", "linear"])
def test_informative_video_models_raise_map(caches, name, caplog):
    opened, table, best, by_name = _choose(caches, name)
    none = by_name["none", ""]
    assert best.active and by_name[best.mode, best.parameters] > none + 0.05
    # A real gain wins (nearly) every half of the videos.
    assert dict((row[0], row[2]) for row in table)[best] >= refine_choice.TRUST
    if name == "oracle":  # the plain filter too, and most of the grid
        assert by_name["topk", "topk=5"] > none + 0.1
        assert sum(value > none for _, value, _ in table) > len(table) / 2
    figure = refine_choice.top_class_concentration(opened.video_probs)
    assert figure < refine_choice.CONCENTRATION_WARNING
    assert "uninformative" not in caplog.text


def test_prior_video_model_warns_and_none_is_chosen(caches, caplog):
    opened, table, best, by_name = _choose(caches, "prior")
    assert refine_choice.top_class_concentration(opened.video_probs) == 1.0
    assert "looks uninformative" in caplog.text and "bench/baselines.py" in caplog.text
    assert best == refine.RefineOptions("none")
    none = by_name["none", ""]
    assert table[0][1] == none and table[0][2] is None
    # Filters hurt: topk drops the rare classes everywhere.
    assert all(by_name["topk", f"topk={k}"] < none for k in (1, 5, 20))


def _one_class_cache(path, lucky):
    """60 videos of 4 segments, all rated for class 7. The first `lucky`
    videos hold only negatives, scored above everything else; the video
    model is 0.5 everywhere but 0 on those videos, so any filter or fusion
    that reads it drops them: a gain that `lucky` videos make."""
    rng = np.random.default_rng(0)
    videos, segments = 60, 4
    shows = rng.random((videos, segments)) < 0.5
    shows[:lucky] = False
    probs = 0.3 * shows + 0.6 * rng.random(shows.shape)
    probs[:lucky] = 0.9 + 0.1 * rng.random((lucky, segments))
    video_ids = [f"v{v:02d}" for v in range(videos)]
    segment_ids = [f"{v}:{5 * s}" for v in video_ids for s in range(segments)]
    video_probs = np.full((videos, 2), 0.5)
    video_probs[:lucky, 0] = 0
    ground_truth = {7: dict(zip(segment_ids, shows.ravel().astype(float)))}
    written = cache.write_cache(str(path), segment_ids, probs.reshape(-1, 1), [7],
                                {}, video_ids, video_probs, [7, 8])
    return cache.ProbabilityCache.open(written), ground_truth


@pytest.mark.parametrize("lucky, trusted", [(2, False), (20, True)])
def test_a_gain_few_videos_make_is_not_trusted(tmp_path, lucky, trusted):
    """Two lucky videos: MAP alone (the best row) would choose a refinement;
    a half holds neither a quarter of the time, so the halves keep none.
    Twenty: every half holds some, the gain is real and chosen."""
    opened, ground_truth = _one_class_cache(tmp_path / "c", lucky)
    table, best = refine_choice.choose(opened, ground_truth, 240)
    top, value, share = table[0]
    none = [row for row in table if not row[0].active][0]
    assert top.active and value > none[1]
    if trusted:
        assert share >= refine_choice.TRUST and best == top
    else:
        assert 0.5 < share < refine_choice.TRUST
        assert best == refine.RefineOptions("none")


def _slow_map(cache, ground_truth, k, options, videos):
    """MAP@k of `options` on the segments of `videos` alone, by
    metrics.segment_map_at_k over the restricted lists and ratings."""
    prefix = tuple(f"{v}:" for v in videos)
    ranked = refine.ranked_from_cache(cache, cache.shape[0], options)
    ranked = {c: [s for s in ids if s.startswith(prefix)][:k] for c, ids in ranked.items()}
    truth = {c: {s: v for s, v in ratings.items() if s.startswith(prefix)}
             for c, ratings in ground_truth.items()}
    return metrics.segment_map_at_k(ranked, truth, k)


@pytest.mark.parametrize("options", [
    refine.RefineOptions("none"), refine.RefineOptions("topk", topk=3),
    refine.RefineOptions("fusion", fusion_weight=0.2)])
def test_halves_score_as_the_metric_on_each_half(caches, options):
    paths, truth_files = caches
    opened = cache.ProbabilityCache.open(paths[0, "linear"])
    ground_truth = submission.read_ground_truth(truth_files[0])
    rated = refine_choice._RatedClasses(opened, ground_truth)
    halves = refine_choice._Halves(rated, ground_truth, K, rounds=3, seed=1)
    maps = halves.maps(options)
    video_rows = rated.segment_video_rows()
    for mask, k, value in zip(halves.masks, halves.ks, maps):
        videos = [opened.video_ids[v] for v in np.unique(video_rows[mask])]
        assert len(videos) == NUM_VIDEOS // 2 and k == K // 2
        assert value == pytest.approx(_slow_map(rated, ground_truth, k, options, videos))


def test_concentration_counts_top_slots():
    probs = np.array([[0.9, 0.8, 0.1, 0.0],
                      [0.9, 0.1, 0.8, 0.0],
                      [0.1, 0.0, 0.8, 0.9]], dtype=np.float16)
    # Top-2 slots: {0, 1}, {0, 2}, {3, 2}: classes 0 and 2 hold 4 of 6.
    assert refine_choice.top_class_concentration(probs, top=2) == pytest.approx(4 / 6)
    assert refine_choice.top_class_concentration(probs, top=2, block_rows=1) == \
        pytest.approx(4 / 6)
    assert refine_choice.top_class_concentration(np.tile(probs[:1], (5, 1)), 2) == 1.0


def test_grid_lines_and_held_out_k():
    grid = refine_choice.candidates(4)
    assert grid[0] == refine.RefineOptions("none")
    assert [o.topk for o in grid if o.mode == "topk"] == [1, 2, 3]
    assert not [o for o in grid if o.mode == "topk,fusion"]  # topk 5, 20 >= 4
    assert len(refine_choice.candidates(3862)) == 23
    table = [(refine.RefineOptions("video_num", videos_fraction=0.05), 0.5, 0.5),
             (refine.RefineOptions("none"), 0.25, None)]
    assert refine_choice.table_lines(table, 7, table[1][0]) == [
        "candidate video_num videos_fraction=0.05 MAP@7 0.500000 halves_won 0.50",
        "candidate none - MAP@7 0.250000 halves_won -",
        "chosen none - MAP@7 0.250000 halves_won -"]
    assert refine_choice.held_out_k(100000, 2062258, 60000) == 2909
    assert refine_choice.held_out_k(6, 1000, 10) == 1


def _flags(mode, parameters):
    """--refine flags of a table line's mode and parameters."""
    pairs = [] if parameters == "-" else parameters.split(",")
    return [f"--refine={mode}"] + [f"--refine_{pair}" for pair in pairs]


def test_eval_choose_refinement_prints_the_table(caches):
    paths, truth_files = caches
    args = [f"--ground_truth_file={truth_files[0]}", f"--segment_max_pred={K}"]
    result = command("eval", f"--cache_dir={paths[0, 'oracle']}", *args,
                     "--choose_refinement")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(refine_choice.candidates(VOCABULARY)) + 1
    fields = [line.split() for line in lines]
    assert all(len(f) == 7 and f[3] == f"MAP@{K}" and f[5] == "halves_won"
               for f in fields)
    assert [f[0] for f in fields] == ["candidate"] * (len(lines) - 1) + ["chosen"]
    values = [float(f[4]) for f in fields[:-1]]
    assert values == sorted(values, reverse=True)
    assert fields[-1][1:] in [f[1:] for f in fields[:-1]] and fields[-1][1] != "none"
    assert float(fields[-1][6]) >= refine_choice.TRUST
    # The chosen line scores as eval scores that refinement given explicitly.
    _, mode, parameters, name, value, _, _ = fields[-1]
    scored = command("eval", f"--cache_dir={paths[0, 'oracle']}", *args,
                     *_flags(mode, parameters)).stdout.split()
    assert scored[-2:] == [name, value]
    prior = command("eval", f"--cache_dir={paths[0, 'prior']}", *args,
                    "--choose_refinement")
    assert "looks uninformative" in prior.stderr
    assert prior.stdout.strip().splitlines()[-1].split()[:3] == ["chosen", "none", "-"]


def test_inference_auto_applies_the_chosen_refinement(caches, tmp_path):
    paths, truth_files = caches
    common = [f"--from_cache={paths[1, 'oracle']}", "--segment_max_pred=40"]
    result = command("inference", *common, f"--output_file={tmp_path}/auto.csv",
                     "--refine=auto", f"--refine_cache_dir={paths[0, 'oracle']}",
                     f"--ground_truth_file={truth_files[0]}")
    chosen = [line for line in result.stderr.splitlines() if ": chosen " in line]
    assert len(chosen) == 1, result.stderr[-3000:]
    _, mode, parameters, name, *_ = chosen[0].split(": ")[-1].split()
    assert mode != "none" and name == "MAP@40"  # same sizes: the same K
    command("inference", *common, f"--output_file={tmp_path}/explicit.csv",
            *_flags(mode, parameters))
    auto = (tmp_path / "auto.csv").read_text()
    assert auto == (tmp_path / "explicit.csv").read_text()
    plain = str(tmp_path / "plain.csv")
    submission.write_submission_from_cache(
        plain, cache.ProbabilityCache.open(paths[1, "oracle"]), 40)
    assert auto != open(plain).read()
