"""One training loop for every tf.distribute strategy, resumable after a kill.

The loop runs `strategy.run` over a distributed dataset (Keras 3 `fit` cannot
do the multi-worker case). It keeps, under `train_dir`:
- `checkpoints/`: tf.train checkpoints (model, optimizer with its EMA, step,
  epoch, dropout's random states) every `checkpoint_every_steps`, written by
  TF's CheckpointManager, which renames into place; plus `ckpt-<step>.weights.h5` raw weights for SWA.
- `summaries/`: TensorBoard scalars (loss, learning rate, validation MAP or
  GAP).
- `best/`: the run with the best validation score so far.
A rerun of the same command restores the last checkpoint and skips the
batches already seen in the current epoch (each epoch's order depends only
on the seed and the epoch), so a SIGKILL loses at most the steps since the
last checkpoint.

EMA: with `ema_momentum`, the optimizer keeps moving averages; validation,
`best/` and the final model use them, swapped in and back out explicitly,
so the raw weights are never overwritten (docs/traps.md).
"""

import contextlib
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_segments.training import distribution
from yt8m_segments.atomic import atomic_path
from yt8m_segments.atomic import names_failed_writes
from yt8m_segments.data import parsing

CHECKPOINT_DIR = "checkpoints"
SUMMARY_DIR = "summaries"
BEST_DIR = "best"


@contextlib.contextmanager
def ema_weights(optimizer):
    """Temporarily give the model variables their EMA values."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not optimizer.use_ema:
        yield
        return
    variables = optimizer._trainable_variables  # pylint: disable=protected-access
    averages = optimizer._model_variables_moving_average  # pylint: disable=protected-access
    raw = [v.numpy() for v in variables]
    for variable, average in zip(variables, averages):
        variable.assign(average)
    try:
        yield
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


def weights_path(train_dir, step):
    return os.path.join(train_dir, CHECKPOINT_DIR, f"ckpt-{step}.weights.h5")


class Trainer:
    """Trains `model` (built inside `strategy.scope()`) on a dataset factory.

    Args:
      loss_fn: (batch, outputs) -> per-example loss [B], where `outputs` is
        what `forward` returns for the batch's frames and mask.
      forward: the model to run in training (a mixture's training model, or
        `model` itself).
      save_run: callable(directory) writing a loadable run (model + config).
      validate: optional callable() -> validation score (higher is better),
        run with EMA weights; `validation_metric` names it ("MAP", "GAP").
      after_step: optional callable() run after each optimizer step (inside
        the replica function), e.g. a mean teacher's EMA update.
      extra_state: more trackables to checkpoint (e.g. the teacher model).
      loss_scale: scale the loss (a float16 model: precision.py), Keras'
        dynamic LossScaleOptimizer around Adam.
      jit_compile: compile each replica's step with XLA.
    """

    def __init__(self, strategy, model, forward, loss_fn, train_dir,
                 learning_rate, global_batch_size, save_run, ema_momentum=None,
                 checkpoint_every_steps=500, keep_checkpoints=5,
                 log_every_steps=50, validate=None, eval_every_steps=None,
                 after_step=None, extra_state=None, validation_metric="MAP",
                 loss_scale=False, jit_compile=False):
        self.strategy = strategy
        self.model = model
        self.forward = forward
        self.loss_fn = loss_fn
        self.train_dir = train_dir
        self.global_batch_size = global_batch_size
        self.save_run = save_run
        self.validate = validate
        self.validation_metric = validation_metric
        self.eval_every_steps = eval_every_steps
        self.after_step = after_step
        self.checkpoint_every_steps = checkpoint_every_steps
        self.log_every_steps = log_every_steps
        self.jit_compile = jit_compile
        self.chief = distribution.is_chief()
        with strategy.scope():
            self.optimizer = keras.optimizers.Adam(
                learning_rate, use_ema=bool(ema_momentum),
                ema_momentum=ema_momentum or 0.99)
            if loss_scale:
                self.optimizer = keras.optimizers.LossScaleOptimizer(
                    self.optimizer)
            self.optimizer.build(model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.epoch_start_step = tf.Variable(0, dtype=tf.int64,
                                                trainable=False)
            self.best_map = tf.Variable(-1.0, dtype=tf.float64,
                                        trainable=False)
        # Keras keeps dropout's seed-generator states out of its weights, so
        # they are checkpointed here: a resumed run draws the masks an
        # uninterrupted one would.
        random_states = [variable.value for variable in model.variables
                         if variable.path.endswith("seed_generator_state")]
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=self.optimizer, step=self.step,
            epoch=self.epoch, epoch_start_step=self.epoch_start_step,
            best_map=self.best_map, random_states=random_states,
            **(extra_state or {}))
        # Every worker saves (it is collective); only the chief's is kept.
        directory = os.path.join(train_dir, CHECKPOINT_DIR)
        if not self.chief:
            directory = tempfile.mkdtemp(prefix="yt8m_worker_checkpoints_")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=keep_checkpoints)
        self.writer = tf.summary.create_noop_writer()
        if self.chief:
            summaries = os.path.join(train_dir, SUMMARY_DIR)
            with names_failed_writes(summaries):
                self.writer = tf.summary.create_file_writer(summaries)
        self._train_step = self._make_train_step()
        self._traced = False

    def restore(self):
        """Resume from the last checkpoint; returns whether there was one."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            step = int(self.step.numpy())
            logging.info("resumed from %s at step %d", latest, step)
            # Killed between the checkpoint and its weights file: this run
            # goes on from here and would never write it, so swa missed the
            # step (found by bench/kill_points.py). The restored raw weights
            # are the step's.
            if not tf.io.gfile.exists(weights_path(self.train_dir, step)):
                self._save_weights(step)
        return bool(latest)

    def _make_train_step(self):
        model, forward, optimizer = self.model, self.forward, self.optimizer
        global_batch_size = self.global_batch_size

        def step_fn(batch):
            with tf.GradientTape() as tape:
                outputs = forward(parsing.model_inputs(batch), training=True)
                per_example = self.loss_fn(batch, outputs)
                loss = tf.nn.compute_average_loss(
                    per_example, global_batch_size=global_batch_size)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(
                        tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss)  # float16: precision.py
            gradients = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients,
                                          model.trainable_variables))
            if self.after_step is not None:
                self.after_step()
            return loss

        replica_step = step_fn
        if self.jit_compile:
            compiled = tf.function(step_fn, jit_compile=True)

            def replica_step(batch):
                """XLA takes no strings: the ids stay out of the step."""
                return compiled({key: value for key, value in batch.items()
                                 if isinstance(value, dict)
                                 or value.dtype != tf.string})

        def train_step(batch):
            per_replica = self.strategy.run(replica_step, args=(batch,))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                        per_replica, axis=None)
        # With XLA it is called eagerly, so that XLA compiles each batch
        # shape as it comes: inside a tf.function traced for open shapes,
        # XLA's dynamic-shape inference aborted the process (TF 2.21, CPU).
        if self.jit_compile:
            return train_step
        return tf.function(train_step, reduce_retracing=True)

    def _trace_for_any_batch_size(self, element_spec, batch):
        """Trace the train step once for every batch size, before the first
        batch: traced on the first batch's shape, a run resumed on an epoch's
        short last batch ran other graphs than an uninterrupted one, whose
        float sums differ (1e-6 after a few steps; bench/kill_points.py).
        The dataset's spec leaves the batch dimension open, and the frames'
        width too, which is taken from `batch` (the last dimension, a width
        or a class count, is the same in every batch). With several
        replicas (per-replica specs) the step is traced as it comes."""
        self._traced = True
        if not all(isinstance(spec, tf.TensorSpec)
                   for spec in tf.nest.flatten(element_spec)):
            return

        def width_known(spec, value):
            shape = spec.shape
            if shape.rank is not None and shape.rank >= 2 and shape[-1] is None:
                shape = shape[:-1].concatenate([value.shape[-1]])
            return tf.TensorSpec(shape, spec.dtype, spec.name)
        self._train_step.get_concrete_function(
            tf.nest.map_structure(width_known, element_spec, batch))

    def _save_weights(self, step):
        """ckpt-<step>.weights.h5, the raw weights swa averages (chief only)."""
        if self.chief:
            with atomic_path(weights_path(self.train_dir, step)) as tmp_path:
                self.model.save_weights(tmp_path)

    def _save_checkpoint(self):
        step = int(self.step.numpy())
        with names_failed_writes(f"{self.manager.directory}/ckpt-{step}"):
            self.manager.save(checkpoint_number=step)
        self._save_weights(step)
        if self.chief:
            kept = {int(p.rsplit("-", 1)[1]) for p in
                    self.manager.checkpoints}
            for old in tf.io.gfile.glob(weights_path(self.train_dir, "*")):
                number = os.path.basename(old)[len("ckpt-"):-len(".weights.h5")]
                if number.isdigit() and int(number) not in kept:
                    tf.io.gfile.remove(old)

    def _validate(self):
        with ema_weights(self.optimizer):
            value = self.validate()
            with self.writer.as_default():
                tf.summary.scalar(
                    f"validation_{self.validation_metric.lower()}", value,
                    step=self.step)
            logging.info("step %d: validation %s %.4f (best %.4f)",
                         int(self.step.numpy()), self.validation_metric, value,
                         max(value, float(self.best_map.numpy())))
            if value > float(self.best_map.numpy()):
                self.best_map.assign(value)
                if self.chief:
                    self.save_run(os.path.join(self.train_dir, BEST_DIR))

    def fit(self, make_dataset, num_epochs, max_steps=None,
            read=lambda batches: batches):
        """Train for `num_epochs` (or exactly `max_steps`, which multi-worker
        training needs so that every worker runs the same steps).

        `make_dataset(epoch)` returns the epoch's batches, or with
        `max_steps`, `make_dataset(0)` is repeated without end. `read` wraps
        the iteration over the distributed batches (reader.iterate: input
        errors as messages naming file and record).
        """
        steps_per_epoch = None
        progress = None
        start, start_step = time.time(), int(self.step.numpy())
        while True:
            epoch = int(self.epoch.numpy())
            if max_steps is None and epoch >= num_epochs:
                break
            if max_steps is not None and int(self.step.numpy()) >= max_steps:
                break
            dataset = make_dataset(epoch if max_steps is None else 0)
            if max_steps is not None:
                dataset = dataset.repeat()
            done = int(self.step.numpy() - self.epoch_start_step.numpy())
            if done:
                dataset = dataset.skip(done)
            batches = self.strategy.experimental_distribute_dataset(dataset)
            target = max_steps or (steps_per_epoch and steps_per_epoch * num_epochs)
            progress = keras.utils.Progbar(target, stateful_metrics=["loss"],
                                           verbose=1 if self.chief else 0)
            for batch in read(batches):
                if not (self._traced or self.jit_compile):
                    self._trace_for_any_batch_size(batches.element_spec, batch)
                loss = float(self._train_step(batch))
                self.step.assign_add(1)
                step = int(self.step.numpy())
                progress.update(step, [("loss", loss)])
                if step % self.log_every_steps == 0:
                    rate = (step - start_step) / max(time.time() - start, 1e-9)
                    logging.info("step %d: loss %.4f, %.1f steps/s, %.0f "
                                 "examples/s", step, loss, rate,
                                 rate * self.global_batch_size)
                    with self.writer.as_default():
                        tf.summary.scalar("loss", loss, step=step)
                        tf.summary.scalar("learning_rate",
                                          float(np.asarray(
                                              self.optimizer.learning_rate)),
                                          step=step)
                if self.eval_every_steps and step % self.eval_every_steps == 0:
                    self._validate()
                if step % self.checkpoint_every_steps == 0:
                    self._save_checkpoint()
                if max_steps is not None and step >= max_steps:
                    break
            if max_steps is None:
                steps_per_epoch = steps_per_epoch or int(
                    self.step.numpy() - self.epoch_start_step.numpy())
                self.epoch.assign_add(1)
                self.epoch_start_step.assign(self.step)
        if int(self.step.numpy()) == start_step and start_step == 0:
            raise ValueError("no training example in the training data")
        if self.validate is not None and not (
                self.eval_every_steps
                and int(self.step.numpy()) % self.eval_every_steps == 0):
            self._validate()
        # Not again where the loop (or the run this one resumes) saved this
        # step: TF rewrites a checkpoint in place, so a kill in the rewrite
        # tore one the state file already listed, the one a rerun restores
        # (found by bench/kill_points.py).
        if self.manager.latest_checkpoint != os.path.join(
                self.manager.directory, f"ckpt-{int(self.step.numpy())}"):
            self._save_checkpoint()
        self.writer.flush()
        checksum = sum(float(np.sum(np.asarray(v, np.float64)))
                       for v in self.model.get_weights())
        logging.info("final weights checksum %.10e after %d steps", checksum,
                     int(self.step.numpy()))
        if self.chief:
            with ema_weights(self.optimizer):
                self.save_run(self.train_dir)
        else:
            tf.io.gfile.rmtree(self.manager.directory)
        return int(self.step.numpy())
