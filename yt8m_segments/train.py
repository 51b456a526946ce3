r"""Train a segment model in two stages.

  python -m yt8m_segments.train --stage=pretrain \
      --train_data_pattern='train-*.tfrecord' --train_dir=P
  python -m yt8m_segments.train --stage=finetune \
      --train_data_pattern='validate-*.tfrecord' --pretrain_dir=P --train_dir=F

Pretraining learns from noisy video-level labels over the whole vocabulary.
Fine-tuning starts from the pretrained weights, keeps only the segment classes'
classifier rows, and trains on rated segments with the weighted loss.
"""

import os

import keras
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from yt8m_segments import cli
from yt8m_segments import distribution
from yt8m_segments import flag_defs
from yt8m_segments import losses
from yt8m_segments import mean_teacher
from yt8m_segments import run_artifacts
from yt8m_segments import soft_targets
from yt8m_segments import trainer as trainer_lib
from yt8m_segments import validation
from yt8m_segments.data import classes
from yt8m_segments.data import parsing
from yt8m_segments.data import segment_cache
from yt8m_segments.data import video_cache
from yt8m_segments.data import views
from yt8m_segments.models import mixture
from yt8m_segments.models import registry

flags.DEFINE_enum("stage", "pretrain", ["pretrain", "finetune"],
                  "pretrain: video-level labels; finetune: rated segments.")
flags.DEFINE_string("train_data_pattern", None,
                    "Glob of training records (comma-separated globs allowed).")
flags.DEFINE_string("pretrain_dir", None,
                    "train_dir of the pretraining run to fine-tune from.")
flags.DEFINE_string("model", "DBoF", "Frame aggregator, by name.")
flags.DEFINE_string("video_level_classifier_model", "MoE",
                    "Classifier head, by name (MoE or Logistic).")
flags.DEFINE_integer("dbof_cluster_size", 256,
                     "DBoF cluster count (the starter code's: 8192).")
flags.DEFINE_integer("dbof_hidden_size", 128,
                     "DBoF hidden layer width (the starter code's: 1024).")
flags.DEFINE_enum("dbof_pooling", "average", ["max", "average"],
                  "How DBoF pools clusters over frames (the starter code's: "
                  "max; average transfers better to 5-frame windows).")
flags.DEFINE_integer("moe_num_mixtures", 2, "Experts per class in the MoE.")
flags.DEFINE_integer("num_sample_frames", 30,
                     "Pretraining: train on this many frames per video instead "
                     "of all (0: all; the starter DBoF used 30, the 4th-place "
                     "paper 15). 30 random frames learn as much as all 300 on "
                     "the bench, in 0.6x the time.")
flags.DEFINE_bool("sample_random_frames", True,
                  "With --num_sample_frames: random frames with replacement; "
                  "otherwise one random contiguous run.")
flags.DEFINE_float("learning_rate", None,
                   "Adam learning rate; default 1e-2 to pretrain, and the "
                   "pretraining run's to fine-tune.")
flags.DEFINE_integer("num_epochs", None,
                     "Passes over the training data; default 15 to pretrain, "
                     "6 to fine-tune.")
flags.DEFINE_float("negative_weight", 1.0,
                   "Fine-tuning: alpha, the total weight of the weak negatives "
                   "(segment classes outside the video's labels).")
flags.DEFINE_enum("segment_loss", "weighted", list(losses.SEGMENT_LOSSES),
                  "Fine-tuning loss: weighted (2nd place: rated pairs + "
                  "--negative_weight * mean CE over classes outside the "
                  "video's labels), seventh_place (positive weight, mined "
                  "negatives), rated_only.")
flags.DEFINE_float("positive_weight", losses.SEVENTH_PLACE_POSITIVE_WEIGHT,
                   "seventh_place loss: weight of positive rated pairs.")
flags.DEFINE_float("mined_negative_weight",
                   losses.SEVENTH_PLACE_NEGATIVE_WEIGHT,
                   "seventh_place loss: weight of the mined-negative term.")
flags.DEFINE_string("teacher_cache_dir", None,
                    "Fine-tuning: a probability cache of a teacher's "
                    "predictions on the training segments, used as soft "
                    "targets.")
flags.DEFINE_float("teacher_weight", 1.0, "Weight of the soft-target term.")
flags.DEFINE_float("teacher_temperature", 1.0, "Soft-target temperature.")
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
flags.DEFINE_float("mean_teacher_weight", 1.0, "Weight of the mean-teacher term.")
flags.DEFINE_float("mean_teacher_decay", 0.999, "EMA decay of the mean teacher.")
flags.DEFINE_integer("log_every_steps", 50, "Log and summarise this often.")
flags.DEFINE_enum("strategy", "default", list(distribution.STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored "
                  "(local GPUs or --num_cpu_devices logical CPUs), "
                  "multi_worker (machines in TF_CONFIG; needs --max_steps).")
flags.DEFINE_integer("num_cpu_devices", 0,
                     "With --strategy=mirrored and no GPU: logical CPU devices.")
flags.DEFINE_integer("max_steps", None,
                     "Train exactly this many steps instead of --num_epochs.")
flags.DEFINE_integer("checkpoint_every_steps", 500,
                     "Checkpoint (model, optimizer, EMA, step) this often; a "
                     "rerun of the same command resumes from the last one.")
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints to keep.")
flags.DEFINE_float("ema_momentum", None,
                   "Keep an exponential moving average of the weights with "
                   "this momentum, used for validation and the saved model; "
                   "the raw weights stay in the checkpoints. Default 0.99 to "
                   "pretrain, none (0) to fine-tune, where it cost MAP.")
flags.DEFINE_integer("eval_every_steps", None,
                     "Validate this often (and at the end); the best run is "
                     "kept in <train_dir>/best.")
flags.DEFINE_integer("seed", 0, "Seed for shuffling and initialisation.")
flags.DEFINE_bool("start_new_model", False,
                  "Start afresh, deleting the checkpoints in --train_dir, "
                  "instead of resuming from them.")

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS
# Stage defaults, chosen by measurement (README, "Results against
# baselines"): with the old 1e-3 / 5 epochs / no EMA stage 1 stopped long
# before it had learned what a ridge regression on mean frames knows, and
# fine-tuning at 0.1x that rate scored below a window-mean logistic.
# Fine-tuning runs at the pretraining run's rate.
DEFAULT_PRETRAIN_LEARNING_RATE = 1e-2
DEFAULT_EPOCHS = {"pretrain": 15, "finetune": 6}
DEFAULT_EMA_MOMENTUM = {"pretrain": 0.99, "finetune": 0.0}


# Flags that predate --model_hparams; passed on when given or changed.
MODEL_HPARAM_FLAGS = ("dbof_cluster_size", "dbof_hidden_size", "dbof_pooling",
                      "moe_num_mixtures")


def model_config(feature_spec):
    """The ModelConfig that --model, its classifier and hparam flags describe."""
    hparams = {name: FLAGS[name].value for name in MODEL_HPARAM_FLAGS
               if FLAGS[name].present
               or FLAGS[name].value != FLAGS[name].default}
    hparams["feature_sizes"] = list(feature_spec.sizes)
    hparams.update(registry.parse_hparams(FLAGS.model_hparams))
    return registry.ModelConfig(
        model=FLAGS.model, classifier=FLAGS.video_level_classifier_model,
        num_classes=FLAGS.num_classes, feature_size=feature_spec.total_size,
        hparams=registry.resolve_hparams(FLAGS.model, hparams,
                                         feature_spec.total_size))


def finetune_model(pretrained, segment_class_ids):
    """A copy of the pretrained model whose classifier keeps only some classes.

    Every layer but the classifier gets the pretrained weights unchanged; the
    classifier gets the rows (output columns) of `segment_class_ids`.
    """
    config = registry.ModelConfig.from_dict(pretrained.model_config.to_dict())
    config.num_classes = len(segment_class_ids)
    model = registry.build_model(config)
    columns = pretrained.columns_for(segment_class_ids)
    for layer in model.layers:
        source = pretrained.model.get_layer(layer.name)
        if layer.name == "classifier":
            layer.set_weights(source.class_subset_weights(columns))
        else:
            layer.set_weights(source.get_weights())
    return model, config


def _forward_and_loss(model, config, stage, teacher=None):
    """The model to run in training and its per-example loss (batch, outputs).

    Fine-tuning adds, when asked: soft targets from a teacher's cache (the
    batch then carries `teacher_probs` / `teacher_found`) and the mean-teacher
    term on the batch's `unlabeled` frames.
    """
    if mixture.is_mixture(model):
        options = mixture.loss_options(config.hparams)

        def supervised(batch, outputs):
            # The mixture loss is a batch mean; spread it over the examples.
            loss = mixture.mixture_loss(batch["labels"], outputs,
                                        batch.get("weights"), **options)
            return tf.fill(tf.shape(batch["labels"])[:1], loss)
        forward = mixture.training_model(model)

        def probabilities_of(outputs):
            return outputs["probabilities"]
    elif stage == "pretrain":
        def supervised(batch, probabilities):
            return losses.weighted_bce_per_example(batch["labels"],
                                                   probabilities)
        forward = model

        def probabilities_of(outputs):
            return outputs
    else:
        segment_loss = losses.segment_loss(FLAGS.segment_loss,
                                           FLAGS.positive_weight,
                                           FLAGS.mined_negative_weight)

        def supervised(batch, probabilities):
            return segment_loss(batch["labels"], probabilities,
                                batch["weights"], batch["rated"])
        forward = model

        def probabilities_of(outputs):
            return outputs

    def loss_fn(batch, outputs):
        loss = supervised(batch, outputs)
        if "teacher_probs" in batch:
            loss += FLAGS.teacher_weight * soft_targets.soft_target_loss_per_example(
                batch["teacher_probs"], probabilities_of(outputs),
                FLAGS.teacher_temperature, mask=batch["teacher_found"])
        if teacher is not None:
            unlabeled = parsing.model_inputs(batch["unlabeled"])
            student = model({"frames": mean_teacher.time_flip(
                unlabeled["frames"], unlabeled["mask"]),
                "mask": unlabeled["mask"]}, training=True)
            consistency = tf.reduce_mean(mean_teacher.mean_teacher_loss_per_example(
                student, teacher(unlabeled)))
            loss += FLAGS.mean_teacher_weight * consistency
        return loss
    return forward, loss_fn


def _validation(model, class_ids, columns, feature_spec, files):
    """A callable giving MAP@K on the rated segments of `files`."""
    dataset = views.rated_segment_dataset(
        None, feature_spec, class_ids, FLAGS.batch_size,
        vocabulary_size=FLAGS.num_classes, context_frames=FLAGS.context_frames,
        files=files, quantized=True, **flag_defs.input_options())
    return lambda: validation.rated_segment_map(
        model, dataset, files, class_ids, columns, FLAGS.segment_max_pred,
        mean_frame=not FLAGS.frame_features)


def _gap_validation(model, class_ids, feature_spec, files):
    """A callable giving GAP@--gap_k of the video predictions over `files`."""
    dataset = validation.whole_video_dataset(
        files, feature_spec, FLAGS.num_classes, FLAGS.batch_size,
        FLAGS.max_frames, FLAGS.frame_features, flag_defs.input_options())
    return lambda: validation.video_gap(model, dataset, files, class_ids,
                                        FLAGS.gap_k)


def _check_local_cache(flag, stage):
    """A cache flag is for one stage, and local to one machine."""
    if FLAGS.stage != stage:
        raise app.UsageError(f"--{flag} is for --stage={stage}")
    if FLAGS.strategy == "multi_worker":
        raise app.UsageError(f"--{flag} is local to one machine: not with "
                             "--strategy=multi_worker")


def _validation_files():
    if FLAGS.num_folds > 1 and (FLAGS.frame_features
                                or FLAGS.eval_metric == "gap"):
        return flag_defs.data_files(FLAGS.train_data_pattern, holdout=True)
    if FLAGS.eval_data_pattern:
        return views.list_files(FLAGS.eval_data_pattern)
    return None


def main(argv):
    del argv
    for name in ("train_data_pattern", "train_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if FLAGS.eval_metric == "gap" and FLAGS.stage != "pretrain":
        raise app.UsageError("--eval_metric=gap validates pretraining; "
                             "fine-tuning validates by MAP@K")
    if not FLAGS.frame_features and FLAGS.stage != "pretrain":
        raise app.UsageError("--frame_features=false is for --stage=pretrain: "
                             "fine-tuning reads rated segments of frame-level "
                             "records")
    if FLAGS.strategy == "multi_worker" and not FLAGS.max_steps:
        raise app.UsageError("--strategy=multi_worker needs --max_steps, so "
                             "that every worker runs the same steps")
    strategy = distribution.make_strategy(FLAGS.strategy, FLAGS.num_cpu_devices)
    checkpoints = os.path.join(FLAGS.train_dir, trainer_lib.CHECKPOINT_DIR)
    if FLAGS.start_new_model and tf.io.gfile.exists(checkpoints):
        tf.io.gfile.rmtree(checkpoints)
    keras.utils.set_random_seed(FLAGS.seed)
    files = flag_defs.data_files(FLAGS.train_data_pattern, holdout=False)
    global_batch_size = FLAGS.batch_size

    with strategy.scope():
        if FLAGS.stage == "pretrain":
            record_spec = flag_defs.feature_spec()
            feature_spec = record_spec.frame_level()
            class_ids = list(range(FLAGS.num_classes))
            config = model_config(feature_spec)
            model = registry.build_model(config)
            learning_rate = FLAGS.learning_rate or DEFAULT_PRETRAIN_LEARNING_RATE
        else:
            if not FLAGS.pretrain_dir:
                raise app.UsageError("--stage=finetune needs --pretrain_dir")
            pretrained = run_artifacts.Run(FLAGS.pretrain_dir)
            feature_spec = pretrained.feature_spec
            class_ids = classes.resolve_segment_label_ids(
                FLAGS.segment_labels_file, ",".join(files))
            model, config = finetune_model(pretrained, class_ids)
            learning_rate = FLAGS.learning_rate or pretrained.config.get(
                "learning_rate", DEFAULT_PRETRAIN_LEARNING_RATE)

    teacher_lookup = None
    if FLAGS.teacher_cache_dir:
        if FLAGS.stage != "finetune":
            raise app.UsageError("--teacher_cache_dir is for --stage=finetune")
        teacher_lookup = soft_targets.TeacherLookup.from_cache_dir(
            FLAGS.teacher_cache_dir, class_ids)
    if FLAGS.segment_cache_dir:
        _check_local_cache("segment_cache_dir", "finetune")
        segment_cache.ensure(
            FLAGS.segment_cache_dir, files, feature_spec, class_ids,
            context_frames=FLAGS.context_frames,
            negative_weight=FLAGS.negative_weight,
            vocabulary_size=FLAGS.num_classes, **flag_defs.input_options())
    if FLAGS.video_cache_dir:
        _check_local_cache("video_cache_dir", "pretrain")
        video_cache.ensure(
            FLAGS.video_cache_dir, files, record_spec,
            max_frames=FLAGS.max_frames, vocabulary_size=FLAGS.num_classes,
            video_level=not FLAGS.frame_features,
            **flag_defs.input_options())
    teacher = unlabeled_files = None
    if FLAGS.mean_teacher_data_pattern:
        if FLAGS.stage != "finetune":
            raise app.UsageError(
                "--mean_teacher_data_pattern is for --stage=finetune")
        unlabeled_files = views.list_files(FLAGS.mean_teacher_data_pattern)
        with strategy.scope():
            teacher = mean_teacher.EmaTeacher(model, FLAGS.mean_teacher_decay)

    def make_dataset(epoch):
        seed = FLAGS.seed + epoch
        dataset = make_labeled(seed)
        if teacher_lookup is not None:
            dataset = dataset.map(teacher_lookup.add_to_batch)
        if unlabeled_files:
            unlabeled = views.test_segment_dataset(
                None, feature_spec, global_batch_size,
                context_frames=FLAGS.context_frames, files=unlabeled_files,
                quantized=True, **flag_defs.input_options()).repeat()
            dataset = tf.data.Dataset.zip((dataset, unlabeled)).map(
                lambda batch, extra: {**batch, "unlabeled": {
                    "frames": extra["frames"], "mask": extra["mask"]}})
        return dataset

    def make_labeled(seed):
        if FLAGS.video_cache_dir:
            return video_cache.dataset(
                FLAGS.video_cache_dir, global_batch_size,
                num_sample_frames=(FLAGS.num_sample_frames or None
                                   if FLAGS.frame_features else None),
                sample_random_frames=FLAGS.sample_random_frames,
                shuffle=True, seed=seed)
        if not FLAGS.frame_features:
            return views.video_level_dataset(
                None, record_spec, FLAGS.num_classes, global_batch_size,
                shuffle=True, seed=seed, files=files,
                **flag_defs.input_options())
        if FLAGS.stage == "pretrain":
            return views.video_dataset(
                None, feature_spec, FLAGS.num_classes, FLAGS.max_frames,
                global_batch_size, shuffle=True, seed=seed,
                num_sample_frames=FLAGS.num_sample_frames or None,
                sample_random_frames=FLAGS.sample_random_frames, files=files,
                quantized=True, **flag_defs.input_options())
        if FLAGS.segment_cache_dir:
            return segment_cache.dataset(FLAGS.segment_cache_dir,
                                         global_batch_size, shuffle=True,
                                         seed=seed)
        return views.rated_segment_dataset(
            None, feature_spec, class_ids, global_batch_size,
            negative_weight=FLAGS.negative_weight,
            vocabulary_size=FLAGS.num_classes, shuffle=True, seed=seed,
            context_frames=FLAGS.context_frames, files=files,
            quantized=True, **flag_defs.input_options())

    def save(directory):
        run_artifacts.save_run(
            directory, model, config, class_ids, feature_spec,
            extra={"stage": FLAGS.stage, "learning_rate": learning_rate,
                   "context_frames": FLAGS.context_frames,
                   "frame_features": FLAGS.frame_features})

    validate = None
    validation_files = _validation_files()
    if validation_files and FLAGS.eval_metric == "gap":
        validate = _gap_validation(model, class_ids, feature_spec,
                                   validation_files)
    elif validation_files:
        segment_classes = (class_ids if FLAGS.stage == "finetune" else
                           classes.resolve_segment_label_ids(
                               FLAGS.segment_labels_file,
                               ",".join(validation_files)))
        validate = _validation(model, segment_classes,
                               [class_ids.index(c) for c in segment_classes],
                               feature_spec, validation_files)

    forward, loss_fn = _forward_and_loss(model, config, FLAGS.stage, teacher)
    logging.info("%s: %s with %d parameters, %d classes, %d replica(s)",
                 FLAGS.stage, model.name, model.count_params(), len(class_ids),
                 strategy.num_replicas_in_sync)
    ema_momentum = (DEFAULT_EMA_MOMENTUM[FLAGS.stage]
                    if FLAGS.ema_momentum is None else FLAGS.ema_momentum)
    trainer = trainer_lib.Trainer(
        strategy, model, forward, loss_fn, FLAGS.train_dir, learning_rate,
        global_batch_size, save, ema_momentum=ema_momentum or None,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
        keep_checkpoints=FLAGS.keep_checkpoints,
        log_every_steps=FLAGS.log_every_steps, validate=validate,
        eval_every_steps=FLAGS.eval_every_steps,
        after_step=(lambda: teacher.update(model)) if teacher else None,
        validation_metric=FLAGS.eval_metric.upper(),
        extra_state={"mean_teacher": teacher.model} if teacher else None)
    trainer.restore()
    steps = trainer.fit(make_dataset, FLAGS.num_epochs or DEFAULT_EPOCHS[
        FLAGS.stage], FLAGS.max_steps)
    logging.info("saved %s after %d steps", FLAGS.train_dir, steps)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
