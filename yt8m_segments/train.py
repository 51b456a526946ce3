r"""Train a segment model in two stages.

  python -m yt8m_segments.train --stage=pretrain \
      --train_data_pattern='train-*.tfrecord' --train_dir=P
  python -m yt8m_segments.train --stage=finetune \
      --train_data_pattern='validate-*.tfrecord' --pretrain_dir=P --train_dir=F

Pretraining learns from noisy video-level labels over the whole vocabulary.
Fine-tuning starts from the pretrained weights, keeps only the segment classes'
classifier rows, and trains on rated segments with the weighted loss. The
flags make a training.task.TrainConfig; training.task.run does the work.
"""

import dataclasses

from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.models import registry
from yt8m_segments.training import distribution
from yt8m_segments.training import losses
from yt8m_segments.training import task

DEFAULTS = task.TrainConfig()

flags.DEFINE_enum("stage", DEFAULTS.stage, list(task.STAGES),
                  "pretrain: video-level labels; finetune: rated segments.")
flags.DEFINE_string("train_data_pattern", None,
                    "Glob of training records (comma-separated globs allowed).")
flags.DEFINE_string("pretrain_dir", None,
                    "train_dir of the pretraining run to fine-tune from.")
flags.DEFINE_string("model", DEFAULTS.model, "Frame aggregator, by name.")
flags.DEFINE_string("video_level_classifier_model",
                    DEFAULTS.video_level_classifier_model,
                    "Classifier head, by name (MoE or Logistic).")
flags.DEFINE_integer("dbof_cluster_size", 256,
                     "DBoF cluster count (the starter code's: 8192); "
                     "--model_hparams=dbof_cluster_size=N.")
flags.DEFINE_integer("dbof_hidden_size", 128,
                     "DBoF hidden layer width (the starter code's: 1024).")
flags.DEFINE_enum("dbof_pooling", "average", ["max", "average"],
                  "How DBoF pools clusters over frames (the starter code's: "
                  "max; average transfers better to 5-frame windows).")
flags.DEFINE_integer("moe_num_mixtures", 2, "Experts per class in the MoE.")
flags.DEFINE_integer("num_sample_frames", DEFAULTS.num_sample_frames,
                     "Pretraining: train on this many frames per video instead "
                     "of all (0: all; the starter DBoF used 30, the 4th-place "
                     "paper 15). 30 random frames learn as much as all 300 on "
                     "the bench, in 0.6x the time.")
flags.DEFINE_bool("sample_random_frames", DEFAULTS.sample_random_frames,
                  "With --num_sample_frames: random frames with replacement; "
                  "otherwise one random contiguous run.")
flags.DEFINE_bool("shuffle", DEFAULTS.shuffle,
                  "Shuffle the training files and examples (seeded by --seed). "
                  "--noshuffle reads them in file order, batch after batch: "
                  "runs that must see the same batches, e.g. one device "
                  "against several, can be compared weight for weight.")
flags.DEFINE_float("learning_rate", None,
                   "Adam learning rate; default "
                   f"{task.DEFAULT_PRETRAIN_LEARNING_RATE:g} to pretrain, and "
                   "the pretraining run's to fine-tune.")
flags.DEFINE_integer("num_epochs", None,
                     "Passes over the training data; default "
                     f"{task.DEFAULT_EPOCHS['pretrain']} to pretrain, "
                     f"{task.DEFAULT_EPOCHS['finetune']} to fine-tune.")
flags.DEFINE_float("negative_weight", DEFAULTS.negative_weight,
                   "Fine-tuning: alpha, the total weight of the weak negatives "
                   "(segment classes outside the video's labels).")
flags.DEFINE_enum("segment_loss", DEFAULTS.segment_loss,
                  list(losses.SEGMENT_LOSSES),
                  "Fine-tuning loss: weighted (2nd place: rated pairs + "
                  "--negative_weight * mean CE over classes outside the "
                  "video's labels), seventh_place (positive weight, mined "
                  "negatives), rated_only.")
flags.DEFINE_float("positive_weight", DEFAULTS.positive_weight,
                   "seventh_place loss: weight of positive rated pairs.")
flags.DEFINE_float("mined_negative_weight", DEFAULTS.mined_negative_weight,
                   "seventh_place loss: weight of the mined-negative term.")
flags.DEFINE_string("teacher_cache_dir", None,
                    "Fine-tuning: a probability cache of a teacher's "
                    "predictions on the training segments, used as soft "
                    "targets.")
flags.DEFINE_float("teacher_weight", DEFAULTS.teacher_weight,
                   "Weight of the soft-target term.")
flags.DEFINE_float("teacher_temperature", DEFAULTS.teacher_temperature,
                   "Soft-target temperature.")
flags.DEFINE_string("segment_cache_dir", None,
                    "Fine-tuning: extract the rated segments of "
                    "--train_data_pattern once into this local directory "
                    "(yt8m_segments/data/segment_cache.py; rebuilt when the "
                    "files or the options change) and train from it, without "
                    "parsing every video each epoch.")
flags.DEFINE_string("video_cache_dir", None,
                    "Pretraining: extract the videos of --train_data_pattern "
                    "(first --max_frames frames) once into this local "
                    "directory (yt8m_segments/data/video_cache.py; rebuilt "
                    "when the files or the options change) and train from "
                    "it, sampling frames without parsing records; as large "
                    "as the records' frames. With --frame_features=false, "
                    "the video-level records' means.")
flags.DEFINE_string("mean_teacher_data_pattern", None,
                    "Fine-tuning: unlabeled records (e.g. the test set) for "
                    "the 4th-place mean-teacher term: MSE between the student "
                    "on time-flipped frames and its EMA teacher.")
flags.DEFINE_float("mean_teacher_weight", DEFAULTS.mean_teacher_weight,
                   "Weight of the mean-teacher term.")
flags.DEFINE_float("mean_teacher_decay", DEFAULTS.mean_teacher_decay,
                   "EMA decay of the mean teacher.")
flags.DEFINE_integer("log_every_steps", DEFAULTS.log_every_steps,
                     "Log and summarise this often.")
flags.DEFINE_enum("strategy", DEFAULTS.strategy, list(distribution.STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored "
                  "(local GPUs or --num_cpu_devices logical CPUs), "
                  "multi_worker (machines in TF_CONFIG; needs --max_steps).")
flags.DEFINE_integer("num_cpu_devices", DEFAULTS.num_cpu_devices,
                     "With --strategy=mirrored and no GPU: logical CPU devices.")
flags.DEFINE_bool("sync_batch_norm", DEFAULTS.sync_batch_norm,
                  "With several replicas, batch norms take their statistics "
                  "over the global batch (all-reduced each step), so the run "
                  "trains as one device would; --nosync_batch_norm keeps "
                  "per-replica statistics (no all-reduce; the weights then "
                  "drift from a one-device run's).")
flags.DEFINE_integer("max_steps", None,
                     "Train exactly this many steps instead of --num_epochs.")
flags.DEFINE_integer("checkpoint_every_steps", DEFAULTS.checkpoint_every_steps,
                     "Checkpoint (model, optimizer, EMA, step) this often; a "
                     "rerun of the same command resumes from the last one.")
flags.DEFINE_integer("keep_checkpoints", DEFAULTS.keep_checkpoints,
                     "Checkpoints to keep.")
flags.DEFINE_float("ema_momentum", None,
                   "Keep an exponential moving average of the weights with "
                   "this momentum, used for validation and the saved model; "
                   "the raw weights stay in the checkpoints. Default "
                   f"{task.DEFAULT_EMA_MOMENTUM['pretrain']} to pretrain, "
                   "none (0) to fine-tune, where it cost MAP.")
flags.DEFINE_integer("eval_every_steps", None,
                     "Validate this often (and at the end); the best run is "
                     "kept in <train_dir>/best.")
flags.DEFINE_bool("start_new_model", DEFAULTS.start_new_model,
                  "Start afresh, deleting the checkpoints in --train_dir, "
                  "instead of resuming from them.")

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS

# Flags that predate --model_hparams; passed on when given or changed.
MODEL_HPARAM_FLAGS = ("dbof_cluster_size", "dbof_hidden_size", "dbof_pooling",
                      "moe_num_mixtures")
# TrainConfig fields that are not one flag each.
DERIVED_FIELDS = ("model_hparams", "feature_spec")


def model_hparams():
    """The hparams the DBoF/MoE flags and --model_hparams give, later wins."""
    hparams = {name: FLAGS[name].value for name in MODEL_HPARAM_FLAGS
               if FLAGS[name].present
               or FLAGS[name].value != FLAGS[name].default}
    hparams.update(registry.parse_hparams(FLAGS.model_hparams))
    return hparams


def config_from_flags():
    """The TrainConfig the parsed flags describe."""
    values = {field.name: FLAGS[field.name].value
              for field in dataclasses.fields(task.TrainConfig)
              if field.name not in DERIVED_FIELDS}
    return task.TrainConfig(**values, model_hparams=model_hparams(),
                            feature_spec=flag_defs.feature_spec())


def main(argv):
    del argv
    task.run(config_from_flags())


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
