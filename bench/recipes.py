r"""The default commands on several generated worlds, beside their baselines.

  python bench/recipes.py [--settings=demo,weak_signal,many_classes,noisy_labels]
      [--work_dir=/tmp/yt8m_recipes] [--scale=1.0] [--seed=0]

Per setting (generator options below), in this order: generate the data;
the references of yt8m_segments/evaluation/baselines.py (label prior and ridge GAP@20 on
the validate videos; random, window-mean logistic and the matched-filter
oracle MAP@K on the test set); then the project's commands with their
defaults, as a user runs them (`train.py --stage=pretrain`, `train.py
--stage=finetune`, `inference.py`, no flagfile): GAP@20 of stage 1, MAP@K
of the pretrained run alone, of the fine-tuned run, and of the fine-tuned
run refined by each mode with stage 1 as the video model (the modes'
default parameters, and `auto`: the mode and parameter chosen on held-out
rated segments, those of the last validate file, by a second fine-tuning
on the other validate files; the fine-tuned model itself trains on all of
them, so its own validate scores would make every refinement look useless).
Prints a markdown table, a column per setting, with the ratios to the
baselines and the time each setting took.
"""

import argparse
import os
import subprocess
import sys
import time

from yt8m_segments.evaluation import baselines
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.evaluation import evaluate
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import refine_choice
from yt8m_segments.postprocess import submission
from yt8m_segments.data import synthetic
from yt8m_segments.data import classes
from yt8m_segments.data import reader
from yt8m_segments.data.features import FeatureSpec

SIZES = dict(num_train_videos=2000, num_validate_videos=800,
             num_test_videos=300)
SETTINGS = {
    "demo": {},
    "weak_signal": dict(signal_strength=0.5),
    "many_classes": dict(num_active_classes=200, num_segment_classes=100),
    "noisy_labels": dict(label_drop_prob=0.4, spurious_label_prob=0.6),
    "varied": dict(full_video_prob=0.3, min_frames=30, max_frames=180,
                   noise_std=0.4),
}
REFINEMENTS = ("topk", "confidence", "video_num", "fusion")


def command(module, *args, log=None):
    """Run `python -m yt8m_segments.<module> args`, output into `log`."""
    with open(log, "a") as handle:
        result = subprocess.run(
            [sys.executable, "-m", f"yt8m_segments.{module}", *args],
            stdout=handle, stderr=subprocess.STDOUT, check=False,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed; see {log}")


def run_setting(name, options, work_dir, scale, seed):
    """{row: value} for one setting."""
    start = time.time()
    root = os.path.join(work_dir, name)
    data = os.path.join(root, "data")
    log = os.path.join(root, "commands.log")
    os.makedirs(root, exist_ok=True)
    sizes = {key: max(20, int(round(value * scale)))
             for key, value in SIZES.items()}
    synthetic.generate(data, seed=seed, **sizes, **options)
    pattern = {split: os.path.join(data, f"{split}-*.tfrecord")
               for split in ("train", "validate", "test")}
    files = {split: reader.list_files(p) for split, p in pattern.items()}
    if len(files["validate"]) < 2:
        raise ValueError(f"{name}: the held-out choice needs 2 validate files")
    held_out = files["validate"][-1]
    pattern["held_out"] = held_out
    labels_file = os.path.join(data, "segment_label_ids.csv")
    ground_truth = submission.read_ground_truth(
        os.path.join(data, "test_ground_truth.csv"))
    class_ids = classes.read_segment_label_ids(labels_file)

    rows = baselines.reference_table(
        files["train"], files["validate"], files["test"], ground_truth,
        FeatureSpec(), class_ids,
        patterns=synthetic.class_patterns(seed, **options))
    k = rows.pop("K")

    pretrain, finetune = os.path.join(root, "pretrain"), os.path.join(root, "finetune")
    command("train", "--stage=pretrain", f"--train_data_pattern={pattern['train']}",
            f"--train_dir={pretrain}", "--start_new_model", log=log)
    rows["video: stage 1 (default pretrain)"] = evaluate.evaluate_model_gap(
        pretrain, files["validate"])
    command("train", "--stage=finetune", f"--train_data_pattern={pattern['validate']}",
            f"--pretrain_dir={pretrain}", f"--train_dir={finetune}",
            "--start_new_model", log=log)

    command("train", "--stage=finetune",
            "--train_data_pattern=" + ",".join(files["validate"][:-1]),
            f"--pretrain_dir={pretrain}", f"--train_dir={root}/finetune_fold",
            "--start_new_model", log=log)

    caches = {}
    for run, split, video in (("pretrain", "test", False),
                              ("finetune", "test", True),
                              ("finetune_fold", "held_out", True)):
        caches[run, split] = os.path.join(root, f"cache_{run}_{split}")
        command("inference", f"--train_dir={os.path.join(root, run)}",
                f"--input_data_pattern={pattern[split]}",
                f"--cache_dir={caches[run, split]}",
                f"--segment_labels_file={labels_file}",
                *([f"--video_train_dir={pretrain}"] if video else []), log=log)
    test_cache = caches["finetune", "test"]
    rows["segment: pretrained only"] = evaluate.evaluate_cache(
        caches["pretrain", "test"], ground_truth, k)[0]
    rows["segment: fine-tuned"] = evaluate.evaluate_cache(
        test_cache, ground_truth, k)[0]
    for mode in REFINEMENTS:
        rows[f"segment: fine-tuned + {mode}"] = evaluate.evaluate_cache(
            test_cache, ground_truth, k, refine_options=refine.RefineOptions(mode))[0]
    _, held_out_truth = evaluate.read_record_labels([held_out])
    chosen = refine_choice.choose_for(
        cache_lib.ProbabilityCache.open(test_cache), k,
        cache_lib.ProbabilityCache.open(caches["finetune_fold", "held_out"]),
        held_out_truth)
    rows["segment: fine-tuned + auto"] = evaluate.evaluate_cache(
        test_cache, ground_truth, k, refine_options=chosen)[0]
    rows["stage 1 / ridge"] = (rows["video: stage 1 (default pretrain)"]
                               / rows["video: ridge on mean frame"])
    rows["fine-tuned / window-mean logistic"] = (
        rows["segment: fine-tuned"] / rows["segment: window-mean logistic"])
    rows["fine-tuned / oracle"] = (rows["segment: fine-tuned"]
                                   / rows["segment: oracle (true patterns)"])
    info = {"K": k, "seconds": time.time() - start,
            "auto chose": f"{chosen.mode} {chosen.parameters}".strip()}
    return rows, info


def format_table(results):
    """Markdown: a row per figure, a column per setting (GAP@20 for video
    rows, MAP@K for segment rows, K per setting below the figures)."""
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for row in results[names[0]][0]:
        lines.append(f"| {row} | " + " | ".join(
            f"{results[name][0][row]:.4f}" if "/" not in row
            else f"{results[name][0][row]:.2f}x" for name in names) + " |")
    for key in ("K", "auto chose", "seconds"):
        lines.append(f"| {key} | " + " | ".join(
            f"{results[name][1][key]:.0f}" if key == "seconds"
            else str(results[name][1][key]) for name in names) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="demo,weak_signal,many_classes,"
                        "noisy_labels")
    parser.add_argument("--work_dir", default="/tmp/yt8m_recipes")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the video counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for name in args.settings.split(","):
        results[name] = run_setting(name, SETTINGS[name], args.work_dir,
                                    args.scale, args.seed)
        print(format_table({name: results[name]}), flush=True)
    print(format_table(results))


if __name__ == "__main__":
    main()
