r"""Train a segment model in two stages.

  python -m yt8m_segments.train --stage=pretrain \
      --train_data_pattern='train-*.tfrecord' --train_dir=P
  python -m yt8m_segments.train --stage=finetune \
      --train_data_pattern='validate-*.tfrecord' --pretrain_dir=P --train_dir=F

Pretraining learns from noisy video-level labels over the whole vocabulary.
Fine-tuning starts from the pretrained weights, keeps only the segment classes'
classifier rows, and trains on rated segments with the weighted loss.
"""

import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from yt8m_segments import flag_defs
from yt8m_segments import losses
from yt8m_segments import run_artifacts
from yt8m_segments.data import classes
from yt8m_segments.data import reader
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
flags.DEFINE_integer("dbof_cluster_size", 8192, "DBoF cluster count.")
flags.DEFINE_integer("dbof_hidden_size", 1024, "DBoF hidden layer width.")
flags.DEFINE_enum("dbof_pooling", "max", ["max", "average"],
                  "How DBoF pools clusters over frames.")
flags.DEFINE_integer("moe_num_mixtures", 2, "Experts per class in the MoE.")
flags.DEFINE_multi_string(
    "model_hparams", [],
    "Model hyperparameters over the model's paper defaults: key=value,... or "
    "a JSON object; repeatable, later ones win (python -m "
    "yt8m_segments.models --list; keys in yt8m_segments/models/registry.py).")
flags.DEFINE_integer("max_frames", 300, "Frames read per video (pretraining).")
flags.DEFINE_integer("num_sample_frames", None,
                     "Pretraining: train on this many frames per video instead "
                     "of all (the starter DBoF used 30, the 4th-place paper 15).")
flags.DEFINE_bool("sample_random_frames", False,
                  "With --num_sample_frames: random frames with replacement; "
                  "otherwise one random contiguous run.")
flags.DEFINE_float("learning_rate", None,
                   "Adam learning rate; default 1e-3 to pretrain, and 0.1x "
                   "the pretraining run's to fine-tune.")
flags.DEFINE_integer("num_epochs", 5, "Passes over the training data.")
flags.DEFINE_float("negative_weight", 1.0,
                   "Fine-tuning: alpha, the total weight of the weak negatives "
                   "(segment classes outside the video's labels).")
flags.DEFINE_integer("log_every_steps", 50, "Print progress this often.")
flags.DEFINE_integer("seed", 0, "Seed for shuffling and initialisation.")
flags.DEFINE_bool("start_new_model", False,
                  "Overwrite a model already in --train_dir.")

FLAGS = flags.FLAGS
DEFAULT_PRETRAIN_LEARNING_RATE = 1e-3
FINETUNE_LEARNING_RATE_SCALE = 0.1


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


def _forward_and_loss(model, config):
    """What to run and how to score it: mixtures add their distillation terms."""
    if mixture.is_mixture(model):
        options = mixture.loss_options(config.hparams)
        return mixture.training_model(model), (
            lambda labels, outputs, weights: mixture.mixture_loss(
                labels, outputs, weights, **options))
    return model, losses.weighted_binary_crossentropy


def _train_loop(model, config, dataset, files, learning_rate):
    """Plain gradient descent over `dataset`; prints loss and rate."""
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)
    forward, loss_fn = _forward_and_loss(model, config)

    @tf.function(reduce_retracing=True)
    def train_step(frames, mask, labels, weights):
        with tf.GradientTape() as tape:
            outputs = forward({"frames": frames, "mask": mask}, training=True)
            loss = loss_fn(labels, outputs, weights)
            total = loss + tf.add_n(model.losses) if model.losses else loss
        gradients = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    start = time.time()
    examples = 0
    loss_sum, loss_count = 0.0, 0
    batches = reader.iterate(dataset, files, FLAGS.compression)
    for step, batch in enumerate(batches, start=1):
        weights = batch.get("weights", tf.ones_like(batch["labels"]))
        loss = train_step(batch["frames"], batch["mask"], batch["labels"],
                          weights)
        examples += int(batch["labels"].shape[0])
        loss_sum += float(loss)
        loss_count += 1
        if step % FLAGS.log_every_steps == 0:
            elapsed = time.time() - start
            logging.info("step %d: loss %.4f, %.0f examples/s",
                         step, loss_sum / loss_count,
                         examples / max(elapsed, 1e-9))
            loss_sum, loss_count = 0.0, 0
    if examples == 0:
        raise ValueError(
            f"no training example in '{FLAGS.train_data_pattern}'")
    logging.info("trained on %d examples in %.1f s", examples,
                 time.time() - start)


def main(argv):
    del argv
    for name in ("train_data_pattern", "train_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if run_artifacts.has_run(FLAGS.train_dir) and not FLAGS.start_new_model:
        raise app.UsageError(
            f"{FLAGS.train_dir} already holds a model; pass --start_new_model "
            "to replace it")
    keras.utils.set_random_seed(FLAGS.seed)
    files = flag_defs.data_files(FLAGS.train_data_pattern, holdout=False)

    if FLAGS.stage == "pretrain":
        feature_spec = flag_defs.feature_spec()
        class_ids = list(range(FLAGS.num_classes))
        config = model_config(feature_spec)
        model = registry.build_model(config)
        learning_rate = FLAGS.learning_rate or DEFAULT_PRETRAIN_LEARNING_RATE
        dataset = views.video_dataset(
            FLAGS.train_data_pattern, feature_spec, FLAGS.num_classes,
            FLAGS.max_frames, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed,
            num_sample_frames=FLAGS.num_sample_frames,
            sample_random_frames=FLAGS.sample_random_frames, files=files,
            **flag_defs.input_options())
    else:
        if not FLAGS.pretrain_dir:
            raise app.UsageError("--stage=finetune needs --pretrain_dir")
        pretrained = run_artifacts.Run(FLAGS.pretrain_dir)
        feature_spec = pretrained.feature_spec
        class_ids = classes.resolve_segment_label_ids(
            FLAGS.segment_labels_file, ",".join(files))
        model, config = finetune_model(pretrained, class_ids)
        learning_rate = FLAGS.learning_rate or (
            FINETUNE_LEARNING_RATE_SCALE * pretrained.config.get(
                "learning_rate", DEFAULT_PRETRAIN_LEARNING_RATE))
        dataset = views.rated_segment_dataset(
            FLAGS.train_data_pattern, feature_spec, class_ids,
            FLAGS.batch_size, negative_weight=FLAGS.negative_weight,
            vocabulary_size=FLAGS.num_classes, shuffle=True, seed=FLAGS.seed,
            context_frames=FLAGS.context_frames, files=files,
            **flag_defs.input_options())

    logging.info("%s: %s with %d parameters, %d classes", FLAGS.stage,
                 model.name, model.count_params(), len(class_ids))
    _train_loop(model, config, dataset.repeat(FLAGS.num_epochs), files,
                learning_rate)
    run_artifacts.save_run(FLAGS.train_dir, model, config, class_ids,
                           feature_spec, extra={"stage": FLAGS.stage,
                                  "learning_rate": learning_rate,
                                  "context_frames": FLAGS.context_frames})
    logging.info("saved %s", FLAGS.train_dir)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
