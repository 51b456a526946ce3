"""refine_choice.py on planted worlds: the grid against oracle, linear-like
and prior-only video models, the uninformative-model check, and the command
lines (eval --choose_refinement, inference --refine=auto)."""

import numpy as np
import pytest

from test_end_to_end import command
from yt8m_segments import cache
from yt8m_segments import refine
from yt8m_segments import refine_choice
from yt8m_segments import submission

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
    by_name = {(options.mode, options.parameters): value for options, value in table}
    return opened, table, best, by_name


@pytest.mark.parametrize("name", ["oracle", "linear"])
def test_informative_video_models_raise_map(caches, name, caplog):
    opened, table, best, by_name = _choose(caches, name)
    none = by_name["none", ""]
    assert best.active and table[0][1] > none + 0.05
    if name == "oracle":  # the plain filter too, and most of the grid
        assert by_name["topk", "topk=5"] > none + 0.1
        assert sum(value > none for _, value in table) > len(table) / 2
    figure = refine_choice.top_class_concentration(opened.video_probs)
    assert figure < refine_choice.CONCENTRATION_WARNING
    assert "uninformative" not in caplog.text


def test_prior_video_model_warns_and_none_is_chosen(caches, caplog):
    opened, table, best, by_name = _choose(caches, "prior")
    assert refine_choice.top_class_concentration(opened.video_probs) == 1.0
    assert "looks uninformative" in caplog.text and "bench/baselines.py" in caplog.text
    assert best == refine.RefineOptions("none")
    none = by_name["none", ""]
    assert table[0][1] == none
    # Filters hurt: topk drops the rare classes everywhere.
    assert all(by_name["topk", f"topk={k}"] < none for k in (1, 5, 20))


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
    table = [(refine.RefineOptions("video_num", videos_fraction=0.05), 0.5),
             (refine.RefineOptions("none"), 0.25)]
    assert refine_choice.table_lines(table, 7) == [
        "candidate video_num videos_fraction=0.05 MAP@7 0.500000",
        "candidate none - MAP@7 0.250000",
        "chosen video_num videos_fraction=0.05 MAP@7 0.500000"]
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
    assert all(len(f) == 5 and f[3] == f"MAP@{K}" for f in fields)
    assert [f[0] for f in fields] == ["candidate"] * (len(lines) - 1) + ["chosen"]
    values = [float(f[4]) for f in fields[:-1]]
    assert values == sorted(values, reverse=True)
    assert fields[-1][1:] == fields[0][1:] and fields[-1][1] != "none"
    # The chosen line scores as eval scores that refinement given explicitly.
    _, mode, parameters, name, value = fields[-1]
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
    _, mode, parameters, name, _ = chosen[0].split(": ")[-1].split()
    assert mode != "none" and name == "MAP@40"  # same sizes: the same K
    command("inference", *common, f"--output_file={tmp_path}/explicit.csv",
            *_flags(mode, parameters))
    auto = (tmp_path / "auto.csv").read_text()
    assert auto == (tmp_path / "explicit.csv").read_text()
    plain = str(tmp_path / "plain.csv")
    submission.write_submission_from_cache(
        plain, cache.ProbabilityCache.open(paths[1, "oracle"]), 40)
    assert auto != open(plain).read()
