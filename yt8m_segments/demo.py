r"""The end-to-end demo: generate data, pretrain, fine-tune, infer, score.

  python -m yt8m_segments.demo --output_dir=demo_output

Runs every stage through its real command line, as a user would (in this
process, cli.run_in_process: one TensorFlow start-up, not one a stage), and
prints
MAP@K (K scaled to the test set as docs/metric.md says) of the fine-tuned
model beside the pretrained model used without fine-tuning, random scores,
the window-mean logistic baseline and the generator's oracle, and stage 1's
video GAP@20 beside the label prior and the ridge baseline
(yt8m_segments/evaluation/baselines.py).
"""

import contextlib
import io
import os
import time

from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.data import reader
from yt8m_segments.data import synthetic
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.evaluation import baselines
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import submission

flags.DEFINE_string(
    "recipe_dir", cli.RECIPES_DIR,
    "Folder of the recipe: demo.flags (shared by both stages; the shipped one "
    "keeps train.py's defaults) and demo_pretrain.flags / demo_finetune.flags "
    "(each stage's).")

flags.adopt_module_key_flags(cli)
for _name in ("seed", "output_dir", "num_classes", *dict(flag_defs.GROUPS)["generated data"]):
    flags.declare_key_flag(_name)
FLAGS = flags.FLAGS


def _command(module, *args):
    """Run `python -m yt8m_segments.<module> args` in this process (no new
    TensorFlow start-up; cli.run_in_process); returns its stdout."""
    print("$ python -m", f"yt8m_segments.{module}", " ".join(args), flush=True)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            cli.run_in_process(f"yt8m_segments.{module}", args)
    except SystemExit as done:
        if done.code:
            raise RuntimeError(f"{module} failed with exit code {done.code}: "
                               f"{' '.join(args)}") from None
    return stdout.getvalue()


def _score_from_eval(stdout, metric="MAP@"):
    """The value of eval.py's last line, `MAP@K value` (or `GAP@k value`)."""
    name, value = stdout.strip().splitlines()[-1].split()
    assert name.startswith(metric), stdout
    return float(value)


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

    # K scales with the test set: its 5-frame windows (a partial last one
    # included), as the generator counts them and inference scores them.
    k = metrics.scaled_k(summary["test"]["segments"])
    results = {}
    for name, train_dir in (("pretrained only (video labels)", pretrain_dir),
                            ("fine-tuned on rated segments", finetune_dir)):
        output_file = os.path.join(output_dir,
                                   f"submission_{os.path.basename(train_dir)}.csv")
        args = [f"--train_dir={train_dir}",
                f"--input_data_pattern={pattern['test']}",
                f"--output_file={output_file}",
                f"--segment_labels_file={segment_labels}"]
        _command("inference", *args, f"--segment_max_pred={k}")
        results[name] = _score_from_eval(_command(
            "eval", f"--submission_file={output_file}",
            f"--ground_truth_file={ground_truth_file}",
            f"--segment_max_pred={k}"))
    ground_truth = submission.read_ground_truth(ground_truth_file)
    class_ids = sorted(summary["segment_class_ids"])
    files = {split: reader.list_files(p) for split, p in pattern.items()}
    references = baselines.reference_table(
        files["train"], files["validate"], files["test"], ground_truth,
        FeatureSpec(), class_ids, k=k,
        patterns=synthetic.class_patterns(seed, **summary["options"]))
    results = {
        "random scores": references["segment: random"],
        "window-mean logistic (baseline)":
            references["segment: window-mean logistic"],
        **results,
        "oracle: true class patterns": references[
            "segment: oracle (true patterns)"]}
    video = {"label prior": references["video: label prior"],
             "ridge on mean frames (baseline)":
                 references["video: ridge on mean frame"],
             "pretrained run": _score_from_eval(_command(
                 "eval", "--eval_metric=gap", f"--train_dir={pretrain_dir}",
                 f"--eval_data_pattern={pattern['validate']}"), "GAP@")}
    print(f"demo finished in {time.time() - start:.0f} s", flush=True)
    return results, video, k


def format_table(results, metric):
    width = max(len(name) for name in results)
    lines = [f"{'model':<{width}}  {metric}", f"{'-' * width}  {'-' * 8}"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in results.items()]
    return "\n".join(lines)


def main(argv):
    del argv
    results, video, k = run_demo(
        FLAGS.output_dir or "demo_output", FLAGS.recipe_dir, FLAGS.seed,
        **flag_defs.generated_data())
    print("segments, test set:")
    print(format_table(results, f"MAP@{k}"))
    print("videos, validate set (stage 1):")
    print(format_table(video, "GAP@20"))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
