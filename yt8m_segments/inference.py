r"""Score every 5-frame segment of the test videos and write a submission.

  python -m yt8m_segments.inference --train_dir=F \
      --input_data_pattern='test-*.tfrecord' --output_file=submission.csv \
      --segment_max_pred=100000

A fine-tuned run knows its segment classes. A model over the whole vocabulary
(a pretrained run used without fine-tuning) is restricted to the classes of
--segment_labels_file.
"""

from absl import app
from absl import flags
from absl import logging

from yt8m_segments import flag_defs
from yt8m_segments import predict
from yt8m_segments import run_artifacts
from yt8m_segments import submission
from yt8m_segments.data import views

flags.DEFINE_string("input_data_pattern", None, "Glob of test records.")
flags.DEFINE_string("output_file", None, "Where to write the submission CSV.")

FLAGS = flags.FLAGS


def infer(train_dir, input_data_pattern, output_file, segment_max_pred,
          batch_size, segment_labels_file=None, context_frames=None,
          input_options=None):
    """Predict every test window and write the submission; returns its size.

    `context_frames` defaults to the run's own (what it was fine-tuned with).
    """
    run = run_artifacts.Run(train_dir)
    class_ids = run.segment_class_ids(segment_labels_file)
    files = views.list_files(input_data_pattern)
    dataset = views.test_segment_dataset(
        input_data_pattern, run.feature_spec, batch_size,
        context_frames=run.context_frames(context_frames), files=files,
        **(input_options or {}))
    segment_ids, probabilities, _ = predict.predict_segments(
        run.model, dataset, files, run.columns_for(class_ids))
    logging.info("predicted %d segments x %d classes", *probabilities.shape)
    submission.write_submission(output_file, segment_ids, probabilities,
                                class_ids, segment_max_pred)
    return probabilities.shape


def main(argv):
    del argv
    for name in ("train_dir", "input_data_pattern", "output_file"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    infer(FLAGS.train_dir, FLAGS.input_data_pattern, FLAGS.output_file,
          FLAGS.segment_max_pred, FLAGS.batch_size, FLAGS.segment_labels_file,
          flag_defs.context_frames_override(), flag_defs.input_options())


def run():
    app.run(main)


if __name__ == "__main__":
    run()
