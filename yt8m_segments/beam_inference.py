r"""Batch inference on Apache Beam: the exported SavedModel over test records,
into the same fp16 probability caches that inference.py writes.

  python -m yt8m_segments.beam_inference --saved_model_dir=E/<version> \
      --input_data_pattern='test-*.tfrecord' --cache_dir=D \
      [--num_shards=S] [--serving_batch_size=32] [--skip_corrupt_records] \
      [--nomerge] [-- Beam pipeline options: --runner=... ...]

Everything after `--` goes to Beam's PipelineOptions. Needs the optional
extra: `pip install 'yt8m_segments[beam]'` (apache-beam[tfrecord]). The
pipeline (yt8m_segments/prediction/beam.py):
  1. the launcher globs --input_data_pattern (Beam FileSystems: local paths,
     gs://, s3://, hdfs://), sorts the files (file i goes to shard
     i % num_shards, as inference.py --num_shards assigns them) and
     fingerprints the SavedModel;
  2. ReadRecords: a DoFn over file names (after a Reshuffle, so files spread
     over workers) walks each TFRecord file's framing with CRC checks and
     emits (file, record index, serialized). Beam's ReadFromTFRecord would
     lose the record index; keeping it lets a corrupt record or a bad frame
     fail with the same message as inference.py, naming file and record;
  3. RunInference with ServingModelHandler: the SavedModel loaded once per
     worker process, batches of serialized SequenceExamples
     (--serving_batch_size videos) through its `serving_default` signature
     (parsing, windowing and the model all run in the exported graph);
  4. the per-window fp16 probabilities grouped by shard and written, with
     cache.CacheWriter, as complete cache directories: D itself when
     --num_shards=1, else D/shards/shard-<i>-of-<S>;
  5. with S > 1 and unless --nomerge, a last step merges the shards into D
     (cache.merge_caches, what `inference --merge_caches` runs). With
     --nomerge, merge them later:
       python -m yt8m_segments.inference \
           --merge_caches=D/shards/shard-00000-of-00002,... --cache_dir=OUT

Each cache's meta.json holds the SavedModel's fingerprint (sha256 of its
files) as `fingerprint` (and `video_fingerprint` when the export serves
video-level probabilities), so merge_caches accepts the shards of one model
and refuses to mix models. Rows are in the order the shard's records
reached the writer (not file order as in inference.py); segment ids are the
same, so compare after sorting by id.

--cache_dir: a local path (on a distributed runner, one every worker and
the launcher see: an NFS or Cloud Storage FUSE mount), or a URL of a Beam
file system (gs://, s3://, hdfs://): each worker then writes its shard
locally with cache.CacheWriter and uploads the directory, meta.json last;
URL shards are not merged by the pipeline (copy them to one machine and run
`inference --merge_caches`). Inputs and the export can be anywhere
TensorFlow and Beam read.
"""

import logging

from absl import app
from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.prediction import beam

flags.DEFINE_string("saved_model_dir", None,
                    "The SavedModel: a version directory E/<version> written "
                    "by yt8m_segments.export (its --export_dir is E).")
flags.DEFINE_integer("serving_batch_size", 32,
                     "Videos (serialized SequenceExamples) per "
                     "serving_default call.")
flags.DEFINE_bool("merge", True,
                  "With --num_shards > 1, merge the shard caches into "
                  "--cache_dir; --nomerge leaves them in <cache_dir>/shards "
                  "(merge later with inference --merge_caches).")

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS


def main(argv):
    for name in ("saved_model_dir", "input_data_pattern", "cache_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    # Beam logs a failing DoFn's traceback before the error reaches the
    # command, which prints it in one line.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    print(beam.run_pipeline(FLAGS.saved_model_dir, FLAGS.input_data_pattern,
                            FLAGS.cache_dir, FLAGS.num_shards,
                            FLAGS.serving_batch_size, FLAGS.merge,
                            FLAGS.skip_corrupt_records,
                            pipeline_args=argv[1:]))


def run():
    cli.run(main, unknown_flag_hint="Beam's pipeline options go after "
            "`--`: ... -- --runner=DirectRunner")


if __name__ == "__main__":
    run()
