"""Two-stage training as a library: `run(TrainConfig(...))`.

What `train.py` does, with no flags below it, so that tests and notebooks
train in-process:

    from yt8m_segments.training import task
    task.run(task.TrainConfig(train_data_pattern="train-*.tfrecord",
                              train_dir="/tmp/pretrain"))
    task.run(task.TrainConfig(stage="finetune", pretrain_dir="/tmp/pretrain",
                              train_data_pattern="validate-*.tfrecord",
                              train_dir="/tmp/finetune"))

Pretraining learns from noisy video-level labels over the whole vocabulary.
Fine-tuning starts from the pretrained weights, keeps only the segment
classes' classifier rows, and trains on rated segments with the weighted loss.
A bad combination of options raises absl's `app.UsageError` (the commands
print it as a usage error); a rerun with the same `train_dir` resumes from
the last checkpoint.
"""

import dataclasses
import os
from typing import Optional

import keras
import tensorflow as tf
from absl import app
from absl import logging

from yt8m_segments import locking
from yt8m_segments import precision
from yt8m_segments.data import classes
from yt8m_segments.data import parsing
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import segment_cache
from yt8m_segments.data import video_cache
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models import mixture
from yt8m_segments.models import registry
from yt8m_segments.training import distribution
from yt8m_segments.training import losses
from yt8m_segments.training import mean_teacher
from yt8m_segments.training import run_artifacts
from yt8m_segments.training import soft_targets
from yt8m_segments.training import trainer as trainer_lib
from yt8m_segments.training import validation

STAGES = ("pretrain", "finetune")
# Stage defaults, chosen by measurement (README, "Results against
# baselines"): with the old 1e-3 / 5 epochs / no EMA stage 1 stopped long
# before it had learned what a ridge regression on mean frames knows, and
# fine-tuning at 0.1x that rate scored below a window-mean logistic.
# Fine-tuning runs at the pretraining run's rate.
DEFAULT_PRETRAIN_LEARNING_RATE = 1e-2
DEFAULT_EPOCHS = {"pretrain": 15, "finetune": 6}
DEFAULT_EMA_MOMENTUM = {"pretrain": 0.99, "finetune": 0.0}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run reads; the fields are train.py's flags
    (`python -m yt8m_segments.train --help` says what each does).

    `model_hparams` is a dict over the model's paper defaults; `None` for
    `learning_rate`, `num_epochs` and `ema_momentum` means the stage's
    default above.
    """

    train_data_pattern: Optional[str] = None
    train_dir: Optional[str] = None
    stage: str = "pretrain"
    pretrain_dir: Optional[str] = None
    # Model.
    model: str = "DBoF"
    video_level_classifier_model: str = "MoE"
    model_hparams: dict = dataclasses.field(default_factory=dict)
    num_classes: int = records.NUM_CLASSES
    feature_spec: FeatureSpec = FeatureSpec()
    # Input.
    batch_size: int = 64
    num_sample_frames: int = 30
    sample_random_frames: bool = True
    max_frames: int = records.MAX_FRAMES
    context_frames: int = 0
    frame_features: bool = True
    compression: str = "auto"
    skip_corrupt_records: bool = False
    num_folds: int = 1
    fold: int = 0
    segment_labels_file: Optional[str] = None
    segment_cache_dir: Optional[str] = None
    video_cache_dir: Optional[str] = None
    # Optimisation.
    learning_rate: Optional[float] = None
    num_epochs: Optional[int] = None
    max_steps: Optional[int] = None
    ema_momentum: Optional[float] = None
    seed: int = 0
    shuffle: bool = True
    # Fine-tuning losses.
    negative_weight: float = 1.0
    segment_loss: str = "weighted"
    positive_weight: float = losses.SEVENTH_PLACE_POSITIVE_WEIGHT
    mined_negative_weight: float = losses.SEVENTH_PLACE_NEGATIVE_WEIGHT
    teacher_cache_dir: Optional[str] = None
    teacher_weight: float = 1.0
    teacher_temperature: float = 1.0
    mean_teacher_data_pattern: Optional[str] = None
    mean_teacher_weight: float = 1.0
    mean_teacher_decay: float = 0.999
    # Distribution, checkpoints, logs.
    strategy: str = "default"
    num_cpu_devices: int = 0
    sync_batch_norm: bool = True
    mixed_precision: str = "float32"
    jit_compile: bool = False
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 5
    log_every_steps: int = 50
    start_new_model: bool = False
    # Validation.
    eval_data_pattern: Optional[str] = None
    eval_every_steps: Optional[int] = None
    eval_metric: str = "map"
    gap_k: int = 20
    segment_max_pred: int = 100000

    def input_options(self):
        """Keyword arguments every view takes."""
        return {"compression": self.compression,
                "skip_corrupt_records": self.skip_corrupt_records}

    def data_files(self, pattern, holdout):
        """The files of `pattern` on one side of the num_folds/fold split."""
        return reader.select_fold(reader.list_files(pattern), self.num_folds,
                                  self.fold, holdout)

    def check(self):
        """A usage error for any option that does not fit the others."""
        for name in ("train_data_pattern", "train_dir"):
            if not getattr(self, name):
                raise app.UsageError(f"--{name} is required")
        if self.stage not in STAGES:
            raise app.UsageError(f"stage must be one of {', '.join(STAGES)}, "
                                 f"not {self.stage!r}")
        try:
            precision.check_policy(self.mixed_precision)
        except ValueError as error:
            raise app.UsageError(f"--mixed_precision: {error}") from None
        if self.jit_compile and self.strategy != "default":
            raise app.UsageError(
                "--jit_compile compiles one device's step: use it with "
                "--strategy=default (a replica's step compiled by XLA cannot "
                "hold the all-reduce of the gradients and the batch norms' "
                "statistics)")
        if self.stage == "finetune" and not self.pretrain_dir:
            raise app.UsageError("--stage=finetune needs --pretrain_dir")
        if self.eval_metric == "gap" and self.stage != "pretrain":
            raise app.UsageError("--eval_metric=gap validates pretraining; "
                                 "fine-tuning validates by MAP@K")
        if not self.frame_features and self.stage != "pretrain":
            raise app.UsageError("--frame_features=false is for "
                                 "--stage=pretrain: fine-tuning reads rated "
                                 "segments of frame-level records")
        if self.strategy == "multi_worker" and not self.max_steps:
            raise app.UsageError("--strategy=multi_worker needs --max_steps, "
                                 "so that every worker runs the same steps")
        for name, stage in (("teacher_cache_dir", "finetune"),
                            ("mean_teacher_data_pattern", "finetune"),
                            ("segment_cache_dir", "finetune"),
                            ("video_cache_dir", "pretrain")):
            if getattr(self, name) and self.stage != stage:
                raise app.UsageError(f"--{name} is for --stage={stage}")
        for name in ("segment_cache_dir", "video_cache_dir"):
            if getattr(self, name) and self.strategy == "multi_worker":
                raise app.UsageError(f"--{name} is local to one machine: not "
                                     "with --strategy=multi_worker")


def model_config(config, feature_spec):
    """The registry.ModelConfig of a pretraining run."""
    hparams = {**config.model_hparams, "feature_sizes": list(feature_spec.sizes)}
    return registry.ModelConfig(
        model=config.model, classifier=config.video_level_classifier_model,
        num_classes=config.num_classes, feature_size=feature_spec.total_size,
        hparams=registry.resolve_hparams(config.model, hparams,
                                         feature_spec.total_size))


def finetune_model(pretrained, segment_class_ids):
    """A copy of the pretrained model whose classifier keeps only some classes.

    Every layer but the classifier gets the pretrained weights unchanged; the
    classifier gets the rows (output columns) of `segment_class_ids`.
    """
    model_config_ = registry.ModelConfig.from_dict(
        pretrained.model_config.to_dict())
    model_config_.num_classes = len(segment_class_ids)
    model = registry.build_model(model_config_)
    columns = pretrained.columns_for(segment_class_ids)
    for layer in model.layers:
        source = pretrained.model.get_layer(layer.name)
        if layer.name == "classifier":
            layer.set_weights(source.class_subset_weights(columns))
        else:
            layer.set_weights(source.get_weights())
    return model, model_config_


def _forward_and_loss(config, model, model_config_, teacher=None):
    """The model to run in training and its per-example loss (batch, outputs).

    Fine-tuning adds, when asked: soft targets from a teacher's cache (the
    batch then carries `teacher_probs` / `teacher_found`) and the mean-teacher
    term on the batch's `unlabeled` frames.
    """
    if mixture.is_mixture(model):
        options = mixture.loss_options(model_config_.hparams)

        def supervised(batch, outputs):
            # The mixture loss is a batch mean; spread it over the examples.
            loss = mixture.mixture_loss(batch["labels"], outputs,
                                        batch.get("weights"), **options)
            return tf.fill(tf.shape(batch["labels"])[:1], loss)
        forward = mixture.training_model(model)

        def probabilities_of(outputs):
            return outputs["probabilities"]
    else:
        if config.stage == "pretrain":
            def supervised(batch, probabilities):
                return losses.weighted_bce_per_example(batch["labels"],
                                                       probabilities)
        else:
            segment_loss = losses.segment_loss(config.segment_loss,
                                               config.positive_weight,
                                               config.mined_negative_weight)

            def supervised(batch, probabilities):
                return segment_loss(batch["labels"], probabilities,
                                    batch["weights"], batch["rated"])
        forward = model

        def probabilities_of(outputs):
            return outputs

    def loss_fn(batch, outputs):
        loss = supervised(batch, outputs)
        if "teacher_probs" in batch:
            loss += config.teacher_weight * soft_targets.soft_target_loss_per_example(
                batch["teacher_probs"], probabilities_of(outputs),
                config.teacher_temperature, mask=batch["teacher_found"])
        if teacher is not None:
            unlabeled = parsing.model_inputs(batch["unlabeled"])
            student = model({"frames": mean_teacher.time_flip(
                unlabeled["frames"], unlabeled["mask"]),
                "mask": unlabeled["mask"]}, training=True)
            consistency = tf.reduce_mean(mean_teacher.mean_teacher_loss_per_example(
                student, teacher(unlabeled)))
            loss += config.mean_teacher_weight * consistency
        return loss
    return forward, loss_fn


def _validation_files(config):
    if config.num_folds > 1 and (config.frame_features
                                 or config.eval_metric == "gap"):
        return config.data_files(config.train_data_pattern, holdout=True)
    if config.eval_data_pattern:
        return views.list_files(config.eval_data_pattern)
    return None


def _validate_fn(config, model, class_ids, feature_spec):
    """A callable giving the validation figure (MAP@K on rated segments, or
    GAP@k of whole videos), or None without validation files."""
    files = _validation_files(config)
    if not files:
        return None
    if config.eval_metric == "gap":
        dataset = validation.whole_video_dataset(
            files, feature_spec, config.num_classes, config.batch_size,
            config.max_frames, config.frame_features, config.input_options())
        return lambda: validation.video_gap(model, dataset, files, class_ids,
                                            config.gap_k)
    segment_classes = (class_ids if config.stage == "finetune" else
                       classes.resolve_segment_label_ids(
                           config.segment_labels_file, ",".join(files),
                           vocabulary_size=config.num_classes,
                           **config.input_options()))
    columns = [class_ids.index(c) for c in segment_classes]
    dataset = views.rated_segment_dataset(
        None, feature_spec, segment_classes, config.batch_size,
        vocabulary_size=config.num_classes,
        context_frames=config.context_frames, files=files, quantized=True,
        **config.input_options())
    return lambda: validation.rated_segment_map(
        model, dataset, files, segment_classes, columns,
        config.segment_max_pred, mean_frame=not config.frame_features)


def run(config):
    """Train (or resume) the run `config` describes; returns the steps done.
    The chief holds train_dir throughout (locking.hold): a second job on it
    refuses at start."""
    config.check()
    if not distribution.is_chief():  # writes nothing to train_dir
        return _train(config)
    with locking.hold(config.train_dir, "training run"):
        return _train(config)


def _train(config):
    strategy = distribution.make_strategy(config.strategy,
                                          config.num_cpu_devices)
    checkpoints = os.path.join(config.train_dir, trainer_lib.CHECKPOINT_DIR)
    if config.start_new_model and tf.io.gfile.exists(checkpoints):
        tf.io.gfile.rmtree(checkpoints)
    keras.utils.set_random_seed(config.seed)
    files = config.data_files(config.train_data_pattern, holdout=False)
    global_batch_size = config.batch_size

    with strategy.scope(), precision.policy_scope(config.mixed_precision):
        if config.stage == "pretrain":
            record_spec = config.feature_spec
            feature_spec = record_spec.frame_level()
            class_ids = list(range(config.num_classes))
            model_config_ = model_config(config, feature_spec)
            model = registry.build_model(model_config_)
            learning_rate = (config.learning_rate
                             or DEFAULT_PRETRAIN_LEARNING_RATE)
        else:
            pretrained = run_artifacts.Run(config.pretrain_dir)
            feature_spec = pretrained.feature_spec
            class_ids = classes.resolve_segment_label_ids(
                config.segment_labels_file, ",".join(files),
                vocabulary_size=len(pretrained.class_ids),
                **config.input_options())
            model, model_config_ = finetune_model(pretrained, class_ids)
            learning_rate = config.learning_rate or pretrained.config.get(
                "learning_rate", DEFAULT_PRETRAIN_LEARNING_RATE)

    teacher_lookup = None
    if config.teacher_cache_dir:
        teacher_lookup = soft_targets.TeacherLookup.from_cache_dir(
            config.teacher_cache_dir, class_ids)
    if config.segment_cache_dir:
        segment_cache.ensure(
            config.segment_cache_dir, files, feature_spec, class_ids,
            context_frames=config.context_frames,
            negative_weight=config.negative_weight,
            vocabulary_size=config.num_classes, **config.input_options())
    if config.video_cache_dir:
        video_cache.ensure(
            config.video_cache_dir, files, record_spec,
            max_frames=config.max_frames, vocabulary_size=config.num_classes,
            video_level=not config.frame_features, **config.input_options())
    teacher = unlabeled_files = None
    if config.mean_teacher_data_pattern:
        unlabeled_files = views.list_files(config.mean_teacher_data_pattern)
        with strategy.scope():
            teacher = mean_teacher.EmaTeacher(model, config.mean_teacher_decay)

    def make_labeled(seed):
        order = {"shuffle": config.shuffle, "seed": seed}
        if config.video_cache_dir:
            return video_cache.dataset(
                config.video_cache_dir, global_batch_size,
                num_sample_frames=(config.num_sample_frames or None
                                   if config.frame_features else None),
                sample_random_frames=config.sample_random_frames,
                **order)
        if not config.frame_features:
            return views.video_level_dataset(
                None, record_spec, config.num_classes, global_batch_size,
                files=files, **order, **config.input_options())
        if config.stage == "pretrain":
            return views.video_dataset(
                None, feature_spec, config.num_classes, config.max_frames,
                global_batch_size, **order,
                num_sample_frames=config.num_sample_frames or None,
                sample_random_frames=config.sample_random_frames, files=files,
                quantized=True, **config.input_options())
        if config.segment_cache_dir:
            return segment_cache.dataset(config.segment_cache_dir,
                                         global_batch_size, **order)
        return views.rated_segment_dataset(
            None, feature_spec, class_ids, global_batch_size,
            negative_weight=config.negative_weight,
            vocabulary_size=config.num_classes, **order,
            context_frames=config.context_frames, files=files,
            quantized=True, **config.input_options())

    def make_dataset(epoch):
        dataset = make_labeled(config.seed + epoch)
        if teacher_lookup is not None:
            dataset = dataset.map(teacher_lookup.add_to_batch)
        if unlabeled_files:
            unlabeled = views.test_segment_dataset(
                None, feature_spec, global_batch_size,
                context_frames=config.context_frames, files=unlabeled_files,
                quantized=True, **config.input_options()).repeat()
            dataset = tf.data.Dataset.zip((dataset, unlabeled)).map(
                lambda batch, extra: {**batch, "unlabeled": {
                    "frames": extra["frames"], "mask": extra["mask"]}})
        return dataset

    def save(directory):
        run_artifacts.save_run(
            directory, precision.as_float32(model, model_config_), model_config_,
            class_ids, feature_spec,
            extra={"stage": config.stage, "learning_rate": learning_rate,
                   "context_frames": config.context_frames,
                   "frame_features": config.frame_features})

    if config.sync_batch_norm and strategy.num_replicas_in_sync > 1:
        distribution.synchronize_batch_norm(model)
    forward, loss_fn = _forward_and_loss(config, model, model_config_, teacher)
    logging.info("%s: %s with %d parameters, %d classes, %d replica(s)",
                 config.stage, model.name, model.count_params(),
                 len(class_ids), strategy.num_replicas_in_sync)
    ema_momentum = (DEFAULT_EMA_MOMENTUM[config.stage]
                    if config.ema_momentum is None else config.ema_momentum)
    trainer = trainer_lib.Trainer(
        strategy, model, forward, loss_fn, config.train_dir, learning_rate,
        global_batch_size, save, ema_momentum=ema_momentum or None,
        checkpoint_every_steps=config.checkpoint_every_steps,
        keep_checkpoints=config.keep_checkpoints,
        log_every_steps=config.log_every_steps,
        validate=_validate_fn(config, model, class_ids, feature_spec),
        eval_every_steps=config.eval_every_steps,
        after_step=(lambda: teacher.update(model)) if teacher else None,
        validation_metric=config.eval_metric.upper(),
        extra_state={"mean_teacher": teacher.model} if teacher else None,
        loss_scale=config.mixed_precision == "mixed_float16",
        jit_compile=config.jit_compile)
    trainer.restore()
    steps = trainer.fit(
        make_dataset, config.num_epochs or DEFAULT_EPOCHS[config.stage],
        config.max_steps, read=lambda batches: reader.iterate(
            batches, files + (unlabeled_files or []), config.compression))
    logging.info("saved %s after %d steps", config.train_dir, steps)
    return steps
