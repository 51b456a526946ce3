"""Pick a tf.distribute strategy by name; the training loop is the same for all.

`default` (one device), `mirrored` (all local GPUs, or `num_cpu_devices`
logical CPUs, which is how tests exercise it), `multi_worker` (the machines in
the TF_CONFIG environment variable). Keras 3 `fit` cannot run the multi-worker
case (docs/traps.md), so training uses its own loop over `strategy.run`.
"""

import json
import os

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def configure_cpu_devices(num_cpu_devices):
    """Split the CPU into logical devices; must run before TF initialises."""
    if num_cpu_devices and num_cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)


def make_strategy(name, num_cpu_devices=0):
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy '{name}'; choose one of {STRATEGIES}")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG "
                             "environment variable naming the workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    configure_cpu_devices(num_cpu_devices)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def synchronize_batch_norm(model):
    """Batch statistics over the global batch in every batch norm of `model`
    (layers.batch_norm.BatchNorm, masked ones included), so that a step on
    several replicas normalises as one device would; returns how many."""
    layers = [layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
              if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


def is_chief():
    """Whether this process writes outputs: the chief, else worker 0."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0
