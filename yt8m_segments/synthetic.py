r"""Write a small YouTube-8M-Segments-like dataset in the real record format,
with planted, learnable structure (the generative model and what each
option does: yt8m_segments/data/synthetic.py).

  python -m yt8m_segments.synthetic --output_dir=data --num_train_videos=2000 \
      --num_validate_videos=800 --num_test_videos=300 --seed=0

Writes train/validate/test records, vocabulary.csv, segment_label_ids.csv,
test_ground_truth.csv and generator.json (seed and options, from which the
oracle's class patterns follow); the same seed and options give the same
bytes. --video_level_records also writes the train videos as 2018-style
video-level records.
"""

from absl import app
from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.data import synthetic

flags.DEFINE_bool("video_level_records", False,
                  "Also write the train videos as 2018-style video-level "
                  "records (train_video-*.tfrecord: mean_rgb, mean_audio, "
                  "labels).")
flags.adopt_module_key_flags(cli)
for _name in ("seed", "output_dir", "num_classes", *dict(flag_defs.GROUPS)["generated data"]):
    flags.declare_key_flag(_name)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    summary = synthetic.generate(FLAGS.output_dir, seed=FLAGS.seed,
                                 video_level=FLAGS.video_level_records,
                                 **flag_defs.generated_data())
    for split in ("train", "validate", "test"):
        print(split, {k: v for k, v in summary[split].items()
                      if not k.endswith("files")})
    print("segment classes:", summary["segment_class_ids"])


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
