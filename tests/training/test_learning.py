"""What the default commands learn on planted data, against simple baselines.

CI-sized: a small generated world (a 200-class vocabulary; the real
vocabulary's size is the heavy twin) and the commands with their defaults
(`train.py --stage=pretrain`, `--stage=finetune`, no flagfile). These are the tests that would have caught stage 1 learning
only the label prior: the batch norms' moving variance still held 0.99^t of
its initial 1 after t steps (inference then shrank every feature), and 3862
classifier biases started at p = 0.5. (The DBoF's mean-frame path, the
fix for stage 1 trailing the ridge with many classes, is pinned exactly in
tests/models/test_models.py: this world is too small to tell it apart, stage 1
varies 0.92-0.98x of the ridge from run to run with or without it.)
"""


import keras
import numpy as np
import pytest

from command_runner import run_command
from yt8m_segments.evaluation import baselines
from yt8m_segments.evaluation import evaluate
from yt8m_segments.training import run_artifacts
from yt8m_segments.postprocess import submission
from yt8m_segments.data import synthetic
from yt8m_segments.data import classes
from yt8m_segments.training import task
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models import registry

WORLD = dict(num_active_classes=12, num_segment_classes=6, min_frames=20,
             max_frames=60, num_files_per_split=2)
# 300 test videos: with 100 the fine-tuned MAP moved by ~0.03 between runs,
# more than the 0.01 the fine-tuning test allows.
SIZES = dict(num_train_videos=640, num_validate_videos=320, num_test_videos=300)
SEED = 5


# CI's world has a 200-class vocabulary: over the real 3862 classes the MoE
# classifier is most of a pretraining step (stage 1 takes 3.5x the time).
# Stage 1 / ridge on the 200-class world: 0.98, 0.91, 0.94 for seeds 5-7;
# a stage 1 that ranks by its biases (the bugs these tests guard against)
# sits at the label prior, well under the bound.
@pytest.fixture(scope="module", params=[
    pytest.param(200, id="200_classes"),
    pytest.param(records.NUM_CLASSES, id="full_vocabulary", marks=pytest.mark.heavy)])
def world(request, tmp_path_factory):
    """Data, its files, the baselines' table, and the stage-1 run."""
    num_classes = request.param
    root = tmp_path_factory.mktemp("learning")
    data = root / "data"
    synthetic.generate(str(data), seed=SEED, num_classes=num_classes, **SIZES,
                       **WORLD)
    files = {split: reader.list_files(str(data / f"{split}-*.tfrecord"))
             for split in ("train", "validate", "test")}
    ground_truth = submission.read_ground_truth(
        str(data / "test_ground_truth.csv"))
    class_ids = classes.read_segment_label_ids(
        str(data / "segment_label_ids.csv"))
    table = baselines.reference_table(
        files["train"], files["validate"], files["test"], ground_truth,
        FeatureSpec(), class_ids)
    # Training as a library, with train.py's defaults.
    task.run(task.TrainConfig(train_data_pattern=f"{data}/train-*.tfrecord",
                              train_dir=f"{root}/pretrain",
                              num_classes=num_classes))
    return dict(root=root, data=data, files=files, table=table,
                ground_truth=ground_truth, class_ids=class_ids)


def test_stage1_learns_the_content_not_the_prior(world):
    """Video GAP@20 of the default pretraining: far above the label-prior
    predictor (where the old defaults sat) and near the ridge."""
    gap = evaluate.evaluate_model_gap(str(world["root"] / "pretrain"),
                                      world["files"]["validate"])
    prior = world["table"]["video: label prior"]
    ridge = world["table"]["video: ridge on mean frame"]
    assert ridge > prior + 0.2  # the world is learnable
    assert gap > prior + 0.5 * (ridge - prior), (gap, prior, ridge)
    assert gap > 0.85 * ridge, (gap, ridge)


def _finetune_map(world, pretrain_dir, name, seed):
    root, data = world["root"], world["data"]
    run_command("train", "--stage=finetune", f"--seed={seed}",
                f"--train_data_pattern={data}/validate-*.tfrecord",
                f"--pretrain_dir={pretrain_dir}", f"--train_dir={root}/{name}")
    cache_dir = root / f"{name}_cache"
    run_command("inference", f"--train_dir={root}/{name}",
                f"--input_data_pattern={data}/test-*.tfrecord",
                f"--cache_dir={cache_dir}")
    return evaluate.evaluate_cache(str(cache_dir), world["ground_truth"],
                                   world["table"]["K"])[0]


# One fine-tuning's MAP moves by ~0.02 with its shuffling seed (measured on
# this world: from the pretrained run 0.514 / 0.541 / 0.535 for seeds 0-2,
# from untrained weights 0.505 / 0.513 / 0.496), more than the gap the test
# looks for; so each side is the mean of two seeds.
SEEDS = (0, 1)


def test_pretraining_pays_and_finetuning_beats_the_window_baseline(world):
    """Fine-tuning from the pretrained run is at least as good as the same
    fine-tuning from untrained weights, and above the window-mean logistic."""
    pretrained = run_artifacts.Run(str(world["root"] / "pretrain"))
    from_pretrained, from_scratch = [], []
    for seed in SEEDS:
        scratch_dir = str(world["root"] / f"untrained{seed}")
        keras.utils.set_random_seed(100 + seed)
        untrained = registry.build_model(pretrained.model_config)
        run_artifacts.save_run(scratch_dir, untrained, pretrained.model_config,
                               pretrained.class_ids, pretrained.feature_spec,
                               extra=dict(pretrained.config, stage="pretrain"))
        from_pretrained.append(_finetune_map(
            world, str(world["root"] / "pretrain"), f"finetune{seed}", seed))
        from_scratch.append(_finetune_map(world, scratch_dir,
                                          f"finetune_scratch{seed}", seed))
    from_pretrained, from_scratch = np.mean(from_pretrained), np.mean(from_scratch)
    logistic = world["table"]["segment: window-mean logistic"]
    random = world["table"]["segment: random"]
    assert logistic > random + 0.2  # the world is learnable
    assert from_pretrained >= from_scratch - 0.01, (from_pretrained, from_scratch)
    assert from_pretrained > logistic, (from_pretrained, logistic)
    assert np.isfinite(from_scratch)
