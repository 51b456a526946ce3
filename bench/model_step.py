r"""Model step: the zoo's models beside plain Keras ones of the same size.

  python bench/model_step.py [--models=DBoF,NeXtVLAD,MixNeXtVLAD]
      [--sizes=demo,starter,garden,paper] [--batch_size=64] [--frames=30]
      [--steps=7] [--trainer=DBoF] [--nobreakdown] [--quick]
  python bench/model_step.py --case=DBoF/garden [...]   # one case, in-process

For each case (model and size; each in a process of its own) it builds the
project's model
(registry.build_model: masks, our BatchNorm, uint8 frames dequantized in the
step as training does) and a plain one of the same size from stock Keras
layers (Dense, BatchNormalization, pooling, Keras' L2 on the classifier
kernels, float32 frames, no masks), then times in this process,
interleaved, one call of each at a time:
  train    a bare tf.function step: forward, loss, gradients, Adam
  predict  a tf.function forward pass, training=False
and prints medians of wall and of CPU time (the machine may be shared) and
plain / project ratios (>= 1.0: the project's step is at least as fast).
Then, per DBoF and NeXtVLAD size, the per-layer breakdown (forward +
backward of each piece alone, training mode, project vs stock), and for the
--trainer models the loop around `strategy.run`: the bare step (static
shapes, then traced for the dataset's spec as Trainer traces it) against
`Trainer`'s own step on the default strategy, without and with the EMA of
weights pretraining uses by default.

Sizes: DBoF "demo" is the registry's CPU-sized default (256 clusters,
average pooling, hidden 128, dropout 0.5, the mean-frame path, MoE 2),
"starter" the starter code's DbofModel (8192 clusters, max pooling, hidden
1024, MoE 2; flags/p4_dbof.flags), "garden" the size of issue 14's
comparison with TF Model Garden (3000 clusters, max pooling, hidden 2000,
MoE 5); NeXtVLAD "paper" is Lin et al. 2018 (K=112, G=8, lambda=2, hidden
2048, SE, logistic); MixNeXtVLAD "paper" three of them mixed
(flags/p2_mix_nextvlad.flags). Every frame is real (sampled frames, as
pretraining reads them). --quick shrinks every case (a smoke run).
"""

import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from keras import layers as stock  # noqa: E402
from keras import ops  # noqa: E402

from yt8m_segments import layers  # noqa: E402
from yt8m_segments import precision  # noqa: E402
from yt8m_segments.data import parsing  # noqa: E402
from yt8m_segments.layers import masked_pooling  # noqa: E402
from yt8m_segments.layers.batch_norm import BatchNorm  # noqa: E402
from yt8m_segments.models import mixture  # noqa: E402
from yt8m_segments.models.registry import (  # noqa: E402
    ModelConfig, build_model, resolve_hparams)
from yt8m_segments.training import losses  # noqa: E402
from yt8m_segments.training import trainer as trainer_lib  # noqa: E402

flags.DEFINE_list("models", ["DBoF", "NeXtVLAD", "MixNeXtVLAD"],
                  "Models to time.")
flags.DEFINE_list("sizes", ["demo", "starter", "garden", "paper"],
                  "Sizes to time "
                  "(each model has its own; see the module doc).")
flags.DEFINE_integer("batch_size", 64, "Videos per step.")
flags.DEFINE_integer("frames", 30, "Frames per video.")
flags.DEFINE_integer("steps", 7, "Timed calls of each step (medians).")
flags.DEFINE_boolean("quick", False, "Tiny sizes: a smoke run in seconds.")
flags.DEFINE_boolean("breakdown", True, "Time the pieces alone too.")
flags.DEFINE_list("trainer", ["DBoF"], "Models whose bare step is timed "
                  "beside Trainer's (empty: none).")
flags.DEFINE_list("precision", ["float32", "float32+xla", "mixed_bfloat16",
                                  "mixed_bfloat16+xla"],
                  "Variants of the project's steps to time against float32: "
                  "POLICY[+xla] (--mixed_precision, --jit_compile; empty: "
                  "none).")
flags.DEFINE_string("case", None, "MODEL/SIZE: time this one case in this "
                    "process (the full run starts one process per case).")
flags.DEFINE_string("results_file", None, "With --case: its results as JSON.")
FLAGS = flags.FLAGS

FEATURE_SIZES = (1024, 128)
NUM_CLASSES = 3862
LEARNING_RATE = 1e-3
NEXTVLAD = {"nextvlad_cluster_size": 112, "nextvlad_groups": 8,
            "nextvlad_expansion": 2, "dropout": 0.5, "hidden_size": 2048,
            "hidden_activation": "linear", "gating": "se",
            "gating_reduction": 8}
DBOF = {"dbof_pooling": "max", "dropout": 0.0, "mean_frame_path": False}
# (model, size) -> (classifier, hparams); the registry's defaults fill the rest.
CASES = {
    ("DBoF", "demo"): ("MoE", {}),
    ("DBoF", "starter"): ("MoE", {**DBOF, "dbof_cluster_size": 8192,
                                  "dbof_hidden_size": 1024,
                                  "moe_num_mixtures": 2}),
    ("DBoF", "garden"): ("MoE", {**DBOF, "dbof_cluster_size": 3000,
                                 "dbof_hidden_size": 2000,
                                 "moe_num_mixtures": 5}),
    ("NeXtVLAD", "paper"): ("Logistic", NEXTVLAD),
    ("MixNeXtVLAD", "paper"): ("Logistic", {**NEXTVLAD, "mixture_size": 3}),
}
QUICK = {"dbof_cluster_size": 64, "dbof_hidden_size": 32,
         "nextvlad_cluster_size": 8, "nextvlad_groups": 4, "hidden_size": 32,
         "mixture_size": 2}
QUICK_SHAPE = {"batch_size": 8, "frames": 6, "feature_sizes": (24, 8),
               "num_classes": 50}


# ---- the plain models: stock layers, float frames, no masks ----

def _relu6():
    return stock.ReLU(max_value=6.0)


def _plain_classifier(units, penalty, **kwargs):
    """A classifier's Dense, with the project's L2 penalty (Keras' own):
    the same model on both sides, regularization included."""
    return stock.Dense(units, kernel_regularizer=keras.regularizers.L2(
        penalty), **kwargs)


def _plain_moe(x, num_classes, mixtures, penalty):
    """MoeClassifier's maths from Dense + softmax / sigmoid."""
    gates = stock.Reshape((num_classes, mixtures + 1))(_plain_classifier(
        num_classes * (mixtures + 1), penalty, use_bias=False)(x))
    gates = stock.Softmax()(gates)[..., :mixtures]
    experts = stock.Reshape((num_classes, mixtures))(_plain_classifier(
        num_classes * mixtures, penalty, activation="sigmoid")(x))
    return ops.sum(gates * experts, axis=-1)


def _plain_dbof(frames, hp):
    x = stock.BatchNormalization()(frames)
    x = stock.Dense(hp["dbof_cluster_size"], use_bias=False)(x)
    x = _relu6()(stock.BatchNormalization()(x))
    x = (stock.GlobalMaxPooling1D() if hp["dbof_pooling"] == "max"
         else stock.GlobalAveragePooling1D())(x)
    x = stock.Dense(hp["dbof_hidden_size"], use_bias=False)(x)
    return _relu6()(stock.BatchNormalization()(x))


def _plain_nextvlad(frames, clusters, groups, expansion):
    """NeXtVLAD's maths (no masks): expansion, attention, assignments,
    residuals to centroids per cluster, L2 per cluster, batch norm."""
    expanded = expansion * frames.shape[-1]
    group_size = expanded // groups
    x = stock.Dense(expanded)(frames)
    attention = stock.Dense(groups, activation="sigmoid")(x)
    a = stock.BatchNormalization()(
        stock.Dense(groups * clusters, use_bias=False)(x))
    a = stock.Softmax()(stock.Reshape((-1, groups, clusters))(a))
    a = a * attention[..., None]
    grouped = stock.Reshape((-1, groups, group_size))(x)
    vlad = ops.einsum("btgk,btgf->bkf", a, grouped)
    centroids = stock.EinsumDense("bk,kf->bkf", (clusters, group_size))
    vlad = vlad - centroids(ops.sum(a, axis=(1, 2)))
    vlad = stock.Flatten()(stock.UnitNormalization(axis=-1)(vlad))
    return stock.BatchNormalization()(vlad)


def _plain_head(x, hp):
    """dropout -> FC + BN -> SE gating, as registry._head."""
    if hp["dropout"]:
        x = stock.Dropout(hp["dropout"])(x)
    if hp["hidden_size"]:
        x = stock.BatchNormalization()(
            stock.Dense(hp["hidden_size"], use_bias=False)(x))
        x = stock.Activation(hp["hidden_activation"])(x)
    if hp["gating"] == "se":
        gate = stock.Dense(x.shape[-1] // hp["gating_reduction"],
                           use_bias=False)(x)
        gate = stock.ReLU()(stock.BatchNormalization()(gate))
        gate = stock.Dense(x.shape[-1], activation="sigmoid",
                           use_bias=False)(gate)
        x = x * gate
    return x


def _plain_features(frames, model, hp):
    if model == "DBoF":
        features = _plain_head(_plain_dbof(frames, hp), hp)
        if hp["mean_frame_path"]:
            features = stock.Concatenate()(
                [features, stock.GlobalAveragePooling1D()(frames)])
        return features
    parts, start = [], 0
    for i, size in enumerate(hp["feature_sizes"]):
        half = 1 if i == 0 else 2
        parts.append(_plain_nextvlad(
            frames[..., start:start + size],
            max(1, hp["nextvlad_cluster_size"] // half),
            max(1, hp["nextvlad_groups"] // half), hp["nextvlad_expansion"]))
        start += size
    return _plain_head(stock.Concatenate()(parts), hp)


def plain_model(model, classifier, hp, num_classes):
    """frames [B, T, D] float -> probabilities (mixtures: the dict of
    `mixture.training_model`'s outputs)."""
    frames = keras.Input((None, sum(hp["feature_sizes"])), name="frames")
    x = stock.UnitNormalization(axis=-1)(frames)
    if not model.startswith("Mix"):
        features = _plain_features(x, model, hp)
        if classifier == "MoE":
            outputs = _plain_moe(features, num_classes,
                                 hp["moe_num_mixtures"], hp["l2_penalty"])
        else:
            outputs = _plain_classifier(num_classes, hp["l2_penalty"],
                                        activation="sigmoid")(features)
        return keras.Model(frames, outputs)
    experts = hp["mixture_size"]
    gate = stock.BatchNormalization()(stock.GlobalAveragePooling1D()(x))
    gate = stock.Dense(experts, activation="softmax")(gate)
    expert_logits = ops.stack([
        _plain_classifier(num_classes, hp["l2_penalty"])(
            _plain_features(x, model[3:], hp))
        for _ in range(experts)], axis=1)
    logits = ops.einsum("bn,bnc->bc", gate, expert_logits)
    return keras.Model(frames, {"probabilities": ops.sigmoid(logits),
                                "logits": logits,
                                "expert_logits": expert_logits})


def plain_loss(labels, outputs, temperature=mixture.DEFAULT_TEMPERATURE):
    """Stock binary cross-entropy summed over classes, as the project's; a
    mixture's with distillation from stock ops."""
    def bce(probabilities=None, logits=None):
        per_class = ops.binary_crossentropy(
            labels, logits if probabilities is None else probabilities,
            from_logits=probabilities is None)
        return ops.mean(ops.sum(per_class, axis=-1))
    if not isinstance(outputs, dict):
        return bce(outputs)
    logits, expert_logits = outputs["logits"], outputs["expert_logits"]
    teacher = ops.log_softmax(ops.stop_gradient(logits) / temperature)
    student = ops.log_softmax(expert_logits / temperature)
    teacher = teacher[:, None]
    distillation = ops.mean(ops.sum(ops.exp(teacher) * (teacher - student),
                                    axis=(1, 2)))
    return (bce(logits=logits) + distillation + sum(
        bce(logits=expert_logits[:, m]) for m in range(expert_logits.shape[1])))


# ---- the steps ----

def project_parts(model_name, config):
    """(model, forward, per-example loss) as training.task builds them."""
    model = build_model(config)
    if not model_name.startswith("Mix"):
        return model, model, lambda batch, probabilities: (
            losses.weighted_bce_per_example(batch["labels"], probabilities))
    options = mixture.loss_options(config.hparams)

    def loss_fn(batch, outputs):
        loss = mixture.mixture_loss(batch["labels"], outputs, **options)
        return tf.fill(tf.shape(batch["labels"])[:1], loss)
    return model, mixture.training_model(model), loss_fn


def train_step(forward, variables, loss_of, regularized, jit_compile=False):
    """A bare tf.function step: forward, loss, gradients, Adam."""
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = loss_of(batch, forward)
            if regularized.losses:
                loss += tf.add_n(regularized.losses)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss
    return step


def project_loss(loss_fn):
    def loss_of(batch, forward):
        outputs = forward(parsing.model_inputs(batch), training=True)
        return tf.reduce_mean(loss_fn(batch, outputs))
    return loss_of


def plain_loss_of(batch, forward):
    return plain_loss(batch["labels"], forward(batch["float_frames"],
                                               training=True))


def make_batch(shape, rng):
    """uint8 frames + mask (the project's input), their dequantized floats
    (the plain model's) and labels."""
    raw = rng.integers(0, 256, (shape["batch_size"], shape["frames"],
                                sum(shape["feature_sizes"])), dtype=np.uint8)
    mask = np.ones(raw.shape[:2], bool)
    labels = (rng.random((raw.shape[0], shape["num_classes"])) < 3e-3)
    batch = {"frames": tf.constant(raw), "mask": tf.constant(mask),
             "labels": tf.constant(labels.astype("float32"))}
    batch["float_frames"] = parsing.model_inputs(batch)["frames"]
    return batch


Timing = collections.namedtuple("Timing", ["wall", "cpu"])


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def interleaved(functions, steps):
    """{name: Timing of one call}: medians of wall and of this process's CPU
    seconds, the calls taken in turns after an untimed call of each
    (tracing). CPU time is what a call costs on a shared machine, where
    wall time also counts the other jobs' turns."""
    walls = {name: [] for name in functions}
    cpus = {name: [] for name in functions}
    for function in functions.values():
        tf.nest.map_structure(np.asarray, function())
    for _ in range(steps):
        for name, function in functions.items():
            cpu, start = _cpu_seconds(), time.perf_counter()
            tf.nest.map_structure(np.asarray, function())
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(_cpu_seconds() - cpu)
    return {name: Timing(float(np.median(walls[name])),
                         float(np.median(cpus[name]))) for name in functions}


def shapes():
    if FLAGS.quick:
        return dict(QUICK_SHAPE)
    return {"batch_size": FLAGS.batch_size, "frames": FLAGS.frames,
            "feature_sizes": FEATURE_SIZES, "num_classes": NUM_CLASSES}


def case_config(model, size, shape):
    classifier, hparams = CASES[(model, size)]
    hparams = {**hparams, **({k: v for k, v in QUICK.items()
                              if k in hparams} if FLAGS.quick else {}),
               "feature_sizes": list(shape["feature_sizes"])}
    config = ModelConfig(model, classifier, shape["num_classes"],
                         sum(shape["feature_sizes"]), hparams)
    return config, resolve_hparams(model, hparams, config.feature_size)


def time_case(model_name, size, shape, rng):
    """The case's timings: project against plain, the trainer's loop, the
    per-layer breakdown ({"pieces": [(piece, project, stock)]})."""
    config, hp = case_config(model_name, size, shape)
    model, forward, loss_fn = project_parts(model_name, config)
    batch = make_batch(shape, rng)
    times = time_against_plain(model, forward, loss_fn, plain_model(
        model_name, config.classifier, hp, shape["num_classes"]), batch)
    if model_name in FLAGS.trainer:
        times.update(trainer_times(model, forward, loss_fn, batch, shape))
    if FLAGS.precision:
        del model, forward
        times["precision"] = precision_times(model_name, config, batch)
    if FLAGS.breakdown and model_name in PIECES:
        times["pieces"] = time_pieces(PIECES[model_name](hp, shape, rng))
    return times


def time_in_child(case):
    """time_case in a process of its own: a tf.function step holding a
    Keras optimizer is never freed (2.3 GB a DBoF garden case), so one
    process ran the machine out of memory by the mixture."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "results.json")
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__),
             f"--case={case[0]}/{case[1]}", f"--results_file={path}",
             f"--batch_size={FLAGS.batch_size}", f"--frames={FLAGS.frames}",
             f"--steps={FLAGS.steps}", f"--trainer={','.join(FLAGS.trainer)}",
             "--quick" if FLAGS.quick else "--noquick",
             "--breakdown" if FLAGS.breakdown else "--nobreakdown",
             f"--precision={','.join(FLAGS.precision)}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if child.returncode:
            raise RuntimeError(f"case {case} failed:\n{child.stderr[-3000:]}")
        with open(path) as results:
            return from_json(json.load(results))


def to_json(times):
    return {key: (value if key != "pieces" else
                  [[name, list(a), list(b)] for name, a, b in value])
            for key, value in times.items()}


def from_json(times):
    def timing(value):
        if isinstance(value, dict):  # precision: {variant: {step: [w, c]}}
            return {variant: {step: Timing(*t) for step, t in steps.items()}
                    for variant, steps in value.items()}
        return Timing(*value) if isinstance(value, list) else value
    return {key: (timing(value) if key != "pieces" else
                  [(name, Timing(*a), Timing(*b)) for name, a, b in value])
            for key, value in times.items()}


def time_against_plain(model, forward, loss_fn, plain, batch):
    """Train and predict steps of both models, interleaved (the steps and
    their optimizers go when this returns, before the trainer's)."""
    project_train = train_step(forward, model.trainable_variables,
                               project_loss(loss_fn), model)
    plain_train = train_step(plain, plain.trainable_variables, plain_loss_of,
                             plain)
    project_predict = tf.function(lambda b: model(
        parsing.model_inputs(b), training=False))
    float_predict = tf.function(lambda b: model(
        {"frames": b["float_frames"], "mask": b["mask"]}, training=False))
    plain_predict = tf.function(lambda b: plain(b["float_frames"],
                                                training=False))
    times = interleaved({
        "train_project": lambda: project_train(batch),
        "train_plain": lambda: plain_train(batch),
        "predict_project": lambda: project_predict(batch),
        "predict_plain": lambda: plain_predict(batch),
        "predict_float": lambda: float_predict(batch)}, FLAGS.steps)
    return {**times, "weights": model.count_params(),
            "plain_weights": plain.count_params()}


def precision_times(model_name, config, batch):
    """{variant: {"train": Timing, "predict": Timing}} of the project's
    steps under each --precision variant (a model per policy, built under
    it as train.py builds it, float32's weights), interleaved."""
    built, functions = {}, {}
    for variant in FLAGS.precision:
        policy, _, xla = variant.partition("+")
        if policy not in built:
            with precision.policy_scope(policy):
                built[policy] = project_parts(model_name, config)
            if policy != precision.FLOAT32 and precision.FLOAT32 in built:
                built[policy][0].set_weights(
                    built[precision.FLOAT32][0].get_weights())
        model, forward, loss_fn = built[policy]
        train = train_step(forward, model.trainable_variables,
                           project_loss(loss_fn), model, jit_compile=bool(xla))
        predict = tf.function(
            lambda b, m=model: m(parsing.model_inputs(b), training=False),
            jit_compile=bool(xla))
        functions[(variant, "train")] = (lambda f: lambda: f(batch))(train)
        functions[(variant, "predict")] = (lambda f: lambda: f(batch))(predict)
    times = interleaved(functions, FLAGS.steps)
    return {variant: {step: list(times[(variant, step)])
                      for step in ("train", "predict")}
            for variant in FLAGS.precision}


def trainer_times(model, forward, loss_fn, batch, shape):
    """The bare step (as `Trainer`'s step_fn, traced for the dataset's
    spec) against Trainer's own step on the default strategy, EMA off and
    on (pretraining's default 0.99)."""
    spec = {key: tf.TensorSpec((None,) + tuple(value.shape[1:]), value.dtype)
            for key, value in batch.items() if key != "float_frames"}
    spec["frames"] = tf.TensorSpec((None, None, spec["frames"].shape[-1]),
                                   tf.uint8)
    spec["mask"] = tf.TensorSpec((None, None), tf.bool)
    feed = {key: batch[key] for key in spec}
    steps = {}
    bare = train_step(forward, model.trainable_variables,
                      project_loss(loss_fn), model)
    steps["bare_static"] = lambda: bare(feed)
    dynamic = train_step(forward, model.trainable_variables,
                         project_loss(loss_fn), model)
    dynamic.get_concrete_function(spec)
    steps["bare_dynamic"] = lambda: dynamic(feed)
    directory = tempfile.mkdtemp(prefix="model_step_")
    for name, ema in (("trainer", None), ("trainer_ema", 0.99)):
        trainer = trainer_lib.Trainer(
            tf.distribute.get_strategy(), model, forward, loss_fn,
            os.path.join(directory, name), LEARNING_RATE,
            shape["batch_size"], save_run=lambda path: None,
            ema_momentum=ema)
        step = trainer._train_step  # pylint: disable=protected-access
        step.get_concrete_function(spec)
        steps[name] = (lambda s: lambda: s(feed))(step)
    times = interleaved(steps, FLAGS.steps)
    times["trainer_traces"] = step.experimental_get_tracing_count()
    return times


# ---- the per-layer breakdown ----

def forward_backward(layer, inputs, watch=True, **call_kwargs):
    """A tf.function: the layer's training-mode forward pass and the
    gradients of a random projection of its output for its weights and,
    with `watch`, its float inputs (not where the model feeds it frames,
    which need no gradient)."""
    inputs = [tf.convert_to_tensor(x) for x in inputs]
    watched = [x for x in inputs if watch and x.dtype.is_floating]
    cotangent = tf.random.normal(tf.shape(
        layer(*inputs, training=True, **call_kwargs)))

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(watched)
            loss = ops.sum(layer(*inputs, training=True, **call_kwargs)
                           * cotangent)
        return loss, tape.gradient(loss, watched + layer.trainable_variables)
    return run


class Function(keras.layers.Layer):
    """A function of tensors as a layer (no weights), for the breakdown."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def call(self, *inputs, training=None):
        return self.function(*inputs)


def _head_pieces(features, classifier, plain_classifier, shape, rng):
    """The classifier, its L2 penalty and the loss on [B, H] `features`."""
    classes = shape["num_classes"]
    probabilities = tf.random.uniform((shape["batch_size"], classes), 0.01,
                                      0.99)
    labels = tf.cast(tf.random.uniform(probabilities.shape) < 3e-3,
                     tf.float32)
    plain_input = keras.Input(features.shape[1:])
    plain = keras.Model(plain_input, plain_classifier(plain_input))
    classifier(features)
    kernels = [w for w in classifier.trainable_weights if len(w.shape) == 2]
    kernel = tf.random.normal((kernels[0].shape[0],
                               sum(w.shape[1] for w in kernels)))
    penalty = next(w.regularizer for w in kernels if w.regularizer)
    return [
        ("classifier", forward_backward(classifier, [features]),
         forward_backward(plain, [features])),
        ("L2 penalty (classifier kernels)",
         forward_backward(Function(penalty), [kernel]),
         forward_backward(Function(keras.regularizers.L2(penalty.l2)),
                          [kernel])),
        ("loss",
         forward_backward(Function(lambda p: losses.weighted_bce_per_example(
             labels, p)), [probabilities]),
         forward_backward(Function(lambda p: ops.sum(ops.binary_crossentropy(
             labels, p), axis=-1)), [probabilities])),
    ]


def dbof_pieces(hp, shape, rng):
    """[(piece, project callable, stock callable)] of DBoF's step."""
    batch, frames = shape["batch_size"], shape["frames"]
    width, clusters = sum(shape["feature_sizes"]), hp["dbof_cluster_size"]
    mask = tf.ones((batch, frames), tf.bool)
    raw = tf.constant(rng.integers(0, 256, (batch, frames, width), np.uint8))
    x = tf.random.normal((batch, frames, width), stddev=0.03)
    h = tf.random.uniform((batch, frames, clusters), 0.0, 6.0)
    pooling = (stock.GlobalMaxPooling1D() if hp["dbof_pooling"] == "max"
               else stock.GlobalAveragePooling1D())
    dense = stock.Dense(clusters, use_bias=False)
    mixtures = hp["moe_num_mixtures"]

    def dequantize_l2(raw_frames, frame_mask):
        frames = parsing.model_inputs({"frames": raw_frames,
                                       "mask": frame_mask})["frames"]
        return layers.L2NormalizeFrames()(frames)
    return [
        ("dequantize + L2 norm",
         forward_backward(Function(dequantize_l2), [raw, mask]),
         forward_backward(stock.UnitNormalization(), [x], watch=False)),
        ("input batch norm",
         forward_backward(BatchNorm(), [x], watch=False, mask=mask),
         forward_backward(stock.BatchNormalization(), [x], watch=False)),
        ("cluster projection", forward_backward(dense, [x]),
         forward_backward(dense, [x])),
        ("masked batch norm",
         forward_backward(BatchNorm(), [h], mask=mask),
         forward_backward(stock.BatchNormalization(), [h])),
        ("pooling",
         forward_backward(Function(masked_pooling.get(hp["dbof_pooling"])),
                          [h, mask]),
         forward_backward(pooling, [h])),
    ] + _head_pieces(
        tf.random.uniform((batch, hp["dbof_hidden_size"]), 0.0, 6.0),
        layers.MoeClassifier(shape["num_classes"], mixtures),
        lambda x: _plain_moe(x, shape["num_classes"], mixtures,
                             hp["l2_penalty"]), shape, rng)


def nextvlad_pieces(hp, shape, rng):
    """The same for NeXtVLAD: its rgb aggregator, the head, the classifier."""
    batch, frames = shape["batch_size"], shape["frames"]
    rgb = shape["feature_sizes"][0]
    clusters, groups = hp["nextvlad_cluster_size"], hp["nextvlad_groups"]
    expansion = hp["nextvlad_expansion"]
    x = tf.random.normal((batch, frames, rgb), stddev=0.03)
    mask = tf.ones((batch, frames), tf.bool)
    frames_input = keras.Input((frames, rgb))
    aggregated = tf.random.normal(
        (batch, clusters * expansion * rgb // groups))
    head_input = keras.Input(aggregated.shape[1:])
    head_hp = {**hp, "dropout": 0.0}
    project_head = keras.Sequential([
        layers.DenseBatchNorm(hp["hidden_size"], hp["hidden_activation"]),
        layers.ContextGating(reduction=hp["gating_reduction"])])
    return [
        ("NeXtVLAD (rgb)",
         forward_backward(layers.NeXtVLAD(clusters, groups, expansion), [x],
                          watch=False, mask=mask),
         forward_backward(keras.Model(frames_input, _plain_nextvlad(
             frames_input, clusters, groups, expansion)), [x], watch=False)),
        ("hidden + SE gating", forward_backward(project_head, [aggregated]),
         forward_backward(keras.Model(head_input, _plain_head(
             head_input, head_hp)), [aggregated])),
    ] + _head_pieces(
        tf.random.normal((batch, hp["hidden_size"])),
        layers.LogisticClassifier(shape["num_classes"]),
        _plain_classifier(shape["num_classes"], hp["l2_penalty"],
                          activation="sigmoid"), shape, rng)


PIECES = {"DBoF": dbof_pieces, "NeXtVLAD": nextvlad_pieces}


# ---- the report ----

def milliseconds(timing):
    """Wall ms (CPU ms)."""
    def text(seconds):
        return f"{1000 * seconds:.{0 if seconds >= 0.1 else 1}f}"
    return f"{text(timing.wall)} ({text(timing.cpu)})"


def compared(project, plain):
    """Table cells: both times, the wall ratio and the CPU one."""
    return (f"| {milliseconds(project)} | {milliseconds(plain)} "
            f"| {plain.wall / project.wall:.2f}x "
            f"| {plain.cpu / project.cpu:.2f}x |")


def print_cases(results):
    print("| model | size | weights (project / plain) "
          "| train ms (project) | train ms (plain) | ratio | CPU ratio "
          "| predict ms (project) | predict ms (plain) | ratio | CPU ratio "
          "| predict ms (project, float32 frames) | ratio | CPU ratio |")
    print("|---|---|---:" + "|---:" * 12 + "|")
    for (model, size), r in results.items():
        on_floats = r["predict_float"]
        print(f"| {model} | {size} | {r['weights'] / 1e6:.1f}M / "
              f"{r['plain_weights'] / 1e6:.1f}M "
              + compared(r["train_project"], r["train_plain"])
              + compared(r["predict_project"], r["predict_plain"])[1:]
              + f" {milliseconds(on_floats)} "
              f"| {r['predict_plain'].wall / on_floats.wall:.2f}x "
              f"| {r['predict_plain'].cpu / on_floats.cpu:.2f}x |")
    print("(ms: median wall (median CPU) of one call; ratio: plain / "
          "project, >= 1.0 when the project's step is at least as fast. "
          "The project's steps dequantize uint8 frames, as training and "
          "inference feed them; the last three columns feed it the plain "
          "model's float32 frames instead.)")


def print_trainer(results):
    rows = {case: r for case, r in results.items() if "trainer" in r}
    if not rows:
        return
    print("\nThe loop around strategy.run (default strategy; ms per step, "
          "wall (CPU)):")
    print("| model | size | bare (static shapes) | bare (dataset spec) "
          "| Trainer step | Trainer step, EMA 0.99 | Trainer traces |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (model, size), r in rows.items():
        print(f"| {model} | {size} | {milliseconds(r['bare_static'])} "
              f"| {milliseconds(r['bare_dynamic'])} "
              f"| {milliseconds(r['trainer'])} "
              f"| {milliseconds(r['trainer_ema'])} "
              f"| {r['trainer_traces']} |")


def print_precision(results):
    rows = {case: r for case, r in results.items() if "precision" in r}
    if not rows:
        return
    print("\nMixed precision and XLA (the project's steps; ms, wall (CPU); "
          "x: float32's time / this one's, > 1 when faster):")
    print("| model | size | variant | train ms | x | CPU x | predict ms "
          "| x | CPU x |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for (model, size), r in rows.items():
        base = r["precision"].get(precision.FLOAT32)
        for variant, steps in r["precision"].items():
            cells = []
            for step in ("train", "predict"):
                t = Timing(*steps[step])
                ratio = ((f"{base[step][0] / t.wall:.2f}x | "
                          f"{base[step][1] / t.cpu:.2f}x") if base
                         else "- | -")
                cells.append(f"{milliseconds(t)} | {ratio}")
            print(f"| {model} | {size} | {variant} | " + " | ".join(cells)
                  + " |")


def time_pieces(pieces):
    """[(piece, project Timing, stock Timing)], interleaved."""
    times = interleaved({(name, side): function for name, project, plain
                         in pieces for side, function
                         in (("project", project), ("stock", plain))},
                        FLAGS.steps)
    return [(name, times[(name, "project")], times[(name, "stock")])
            for name, _, _ in pieces]


def print_breakdowns(results):
    for (model, size), r in results.items():
        if "pieces" not in r:
            continue
        print(f"\nPer-layer breakdown, {model} {size} (forward + backward; "
              "ms, wall (CPU)):")
        print("| piece | project | stock | ratio | CPU ratio |")
        print("|---|---:|---:|---:|---:|")
        for name, project, plain in r["pieces"]:
            print(f"| {name} " + compared(project, plain))


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # each piece's tf.function is new
    keras.utils.set_random_seed(0)
    shape = shapes()
    if FLAGS.case:
        case = tuple(FLAGS.case.split("/"))
        results = {case: time_case(*case, shape, np.random.default_rng(0))}
        if FLAGS.results_file:
            with open(FLAGS.results_file, "w") as out:
                json.dump(to_json(results[case]), out)
    else:
        results = {case: time_in_child(case) for case in CASES
                   if case[0] in FLAGS.models and case[1] in FLAGS.sizes}
    print(f"batch {shape['batch_size']}, {shape['frames']} frames of "
          f"{sum(shape['feature_sizes'])} features, {shape['num_classes']} "
          f"classes, float32, {FLAGS.steps} interleaved calls, medians")
    print_cases(results)
    print_trainer(results)
    print_precision(results)
    print_breakdowns(results)


if __name__ == "__main__":
    app.run(main)
