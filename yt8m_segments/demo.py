r"""The end-to-end demo: generate data, pretrain, fine-tune, infer, score.

  python -m yt8m_segments.demo --output_dir=demo_output

Runs every stage through its real command line, as a user would, and prints
MAP@K (K scaled to the test set as SPEC section 4 says) of the fine-tuned
model beside the pretrained model used without fine-tuning and random scores.
"""

import os
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags

from yt8m_segments import metrics
from yt8m_segments import submission
from yt8m_segments import synthetic

synthetic.define_flags()
flags.DEFINE_string(
    "recipe_dir",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 "flags"),
    "Folder of the recipe: demo.flags (the model) and demo_pretrain.flags / "
    "demo_finetune.flags (each stage's schedule).")

FLAGS = flags.FLAGS


def _command(module, *args):
    """Run `python -m yt8m_segments.<module> args`; returns its stdout."""
    command = [sys.executable, "-m", f"yt8m_segments.{module}", *args]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed with exit code "
                           f"{result.returncode}: {' '.join(command)}")
    return result.stdout


def _map_from_eval(stdout):
    name, value = stdout.strip().splitlines()[-1].split()
    assert name.startswith("MAP@"), stdout
    return float(value)


def _random_map(data_dir, segment_ids, class_ids, k, ground_truth, seed):
    scores = np.random.default_rng(seed).random(
        (len(segment_ids), len(class_ids)), dtype=np.float32)
    ranked = metrics.ranked_from_scores(segment_ids, scores, class_ids, k)
    return metrics.segment_map_at_k(ranked, ground_truth, k)


def run_demo(output_dir, recipe_dir, seed, **data_options):
    """All stages; returns {row name: MAP} and K."""
    start = time.time()
    data_dir = os.path.join(output_dir, "data")
    summary = synthetic.generate(data_dir, seed=seed, **data_options)
    print(f"generated {data_dir}: {summary}", flush=True)
    pattern = {split: os.path.join(data_dir, f"{split}-*.tfrecord")
               for split in ("train", "validate", "test")}
    segment_labels = os.path.join(data_dir, "segment_label_ids.csv")
    ground_truth_file = os.path.join(data_dir, "test_ground_truth.csv")
    pretrain_dir = os.path.join(output_dir, "pretrain")
    finetune_dir = os.path.join(output_dir, "finetune")
    def recipe(stage):
        return [f"--flagfile={os.path.join(recipe_dir, 'demo.flags')}",
                f"--flagfile={os.path.join(recipe_dir, f'demo_{stage}.flags')}",
                f"--seed={seed}", "--start_new_model"]

    _command("train", *recipe("pretrain"),
             f"--train_data_pattern={pattern['train']}",
             f"--train_dir={pretrain_dir}")
    _command("train", *recipe("finetune"),
             f"--train_data_pattern={pattern['validate']}",
             f"--pretrain_dir={pretrain_dir}", f"--train_dir={finetune_dir}")

    results = {}
    k = None
    for name, train_dir in (("pretrained only (video labels)", pretrain_dir),
                            ("fine-tuned on rated segments", finetune_dir)):
        output_file = os.path.join(output_dir,
                                   f"submission_{os.path.basename(train_dir)}.csv")
        args = [f"--train_dir={train_dir}",
                f"--input_data_pattern={pattern['test']}",
                f"--output_file={output_file}",
                f"--segment_labels_file={segment_labels}"]
        if k is None:
            # K scales with the test set; count its windows from the first run.
            _command("inference", *args, "--segment_max_pred=100000")
            segment_ids = sorted({s for ids in submission.read_submission(
                output_file).values() for s in ids})
            k = metrics.scaled_k(len(segment_ids))
        _command("inference", *args, f"--segment_max_pred={k}")
        results[name] = _map_from_eval(_command(
            "eval", f"--submission_file={output_file}",
            f"--ground_truth_file={ground_truth_file}",
            f"--segment_max_pred={k}"))
    ground_truth = submission.read_ground_truth(ground_truth_file)
    class_ids = sorted(summary["segment_class_ids"])
    results = {"random scores": _random_map(
        data_dir, segment_ids, class_ids, k, ground_truth, seed), **results}
    print(f"demo finished in {time.time() - start:.0f} s", flush=True)
    return results, k


def format_table(results, k):
    width = max(len(name) for name in results)
    lines = [f"{'model':<{width}}  MAP@{k}", f"{'-' * width}  {'-' * 8}"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in results.items()]
    return "\n".join(lines)


def main(argv):
    del argv
    results, k = run_demo(
        FLAGS.output_dir or "demo_output", FLAGS.recipe_dir, FLAGS.seed,
        num_train_videos=FLAGS.num_train_videos,
        num_validate_videos=FLAGS.num_validate_videos,
        num_test_videos=FLAGS.num_test_videos,
        **{name: getattr(FLAGS, name) for name in synthetic.DEFAULTS})
    print(format_table(results, k))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
