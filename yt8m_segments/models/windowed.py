"""Run a window model on whole videos: per-frame work once, then pool each window.

A model from `registry.build_model` (freshly built or loaded from .keras) is a
functional graph over one window: frames [N, W, D] + mask [N, W] -> L2 norm
per frame -> [per-modality slices] -> aggregator(s) -> head -> classifier.
Context windows (W = 5 + 2n frames, stride 5) overlap, so running that graph
on flat windows repeats every per-frame step (input batch norm, cluster
projections, soft assignments, attention, ...) about W / 5 times.

`windowed_model(model)` walks the model's own graph (its layer objects, so its
weights) on the per-video view (`views.test_segment_dataset(...,
per_video=True)`): frame-wise layers and each aggregator's `frame_features`
run once on the videos [B, T, ...]; the per-frame features are gathered into
windows [N, W, F] and pooled by the aggregator's `pool_frames`; everything
after the pooling (head, classifier, a mixture's gate and heads) runs on the
windows as before. At inference batch norm is a per-frame affine map, so the
outputs equal the flat windows' up to float rounding.

Which nodes are split is decided per node of the graph, not per model name:
  frame-wise   L2NormalizeFrames, FeatureSlice: run on [B, T, D]
  splittable   any layer with `frame_features` / `pool_frames` (DBoF,
               GatedDBoF, SoftDBoF, NetVLAD and its variants, NetFV, NeXtVLAD,
               FramePooling, MixtureGate)
  window-level everything whose inputs are already pooled
A frame-level tensor reaching any other layer (RecurrentAggregator: order
matters, its state runs through the window) makes `supports_windowed` False;
callers then keep the flat windows.
"""

import keras
import tensorflow as tf

from yt8m_segments.layers.feature_slice import FeatureSlice
from yt8m_segments.layers.frame_normalization import L2NormalizeFrames

FRAME_WISE = (L2NormalizeFrames, FeatureSlice)
FRAME, WINDOW = "frame", "window"


class NotWindowable(ValueError):
    """The model has a layer that needs the window's frames in order."""


def is_splittable(layer):
    """Whether `layer` offers frame_features / pool_frames."""
    return callable(getattr(layer, "frame_features", None)) and callable(
        getattr(layer, "pool_frames", None))


def _nodes(model):
    """The model's nodes in execution order (inputs first)."""
    by_depth = model._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def _inputs(model):
    """(frames, mask) KerasTensors of a model built by `registry.build_model`."""
    structure = model.input
    if not isinstance(structure, dict) or set(structure) != {"frames", "mask"}:
        raise NotWindowable(f"{model.name} does not take {{'frames', 'mask'}}")
    return structure["frames"], structure["mask"]


def _plan(model):
    """[(node, action)] with action 'frame', 'split' or 'window'; raises
    NotWindowable naming the first layer that cannot take pooled windows."""
    frames, mask = _inputs(model)
    level = {id(frames): FRAME, id(mask): FRAME}
    plan = []
    for node in _nodes(model):
        tensors = node.input_tensors
        levels = {level.get(id(t)) for t in tensors}
        if None in levels:
            raise NotWindowable(f"node {node.operation.name} has an input "
                                "outside the graph")
        op = node.operation
        first = node.arguments.args[0] if node.arguments.args else None
        first_level = (level.get(id(first)) if isinstance(
            first, keras.KerasTensor) else None)
        if levels == {WINDOW}:
            action, out = WINDOW, WINDOW
        elif isinstance(op, FRAME_WISE) and levels == {FRAME}:
            action, out = FRAME, FRAME
        elif is_splittable(op) and first_level == FRAME and all(
                level[id(t)] == FRAME for t in tensors):
            action, out = "split", WINDOW
        else:
            raise NotWindowable(
                f"layer '{op.name}' ({type(op).__name__}) needs the frames of "
                "each window (no frame_features / pool_frames split)")
        for t in node.outputs:
            level[id(t)] = out
        plan.append((node, action))
    for t in model.outputs:
        if level.get(id(t)) != WINDOW:
            raise NotWindowable(f"output {t.name} is not per window")
    return plan


def supports_windowed(model):
    """Whether every frame-level layer of `model` is frame-wise or splittable."""
    try:
        _plan(model)
    except NotWindowable:
        return False
    return True


def why_not_windowed(model):
    """None when `model` supports the windowed path, else the reason."""
    try:
        _plan(model)
    except NotWindowable as error:
        return str(error)
    return None


def _call(op, args, kwargs):
    if getattr(op, "_call_has_training_arg", False) and "training" not in kwargs:
        kwargs = {**kwargs, "training": False}
    return op(*args, **kwargs)


class WindowedModel:
    """`model` applied to windows of whole videos; see the module docstring.

    Call with the per-video batch: `frames` [B, T, D], `mask` [B, T],
    `window_index` [B, S, W], `window_mask` [B, S, W] -> the model's first
    output per window, [B, S, C]. `segments(...)` also takes
    `segment_mask` [B, S] and returns only the real windows, [N, C] in
    (video, window) order: the flat view's order.
    """

    def __init__(self, model):
        self.model = model
        self.plan = _plan(model)
        self.frames_input, self.mask_input = _inputs(model)

    def __call__(self, frames, mask, window_index, window_mask):
        shape = tf.shape(window_index)
        batch, segments = shape[0], shape[1]
        rows = tf.repeat(tf.range(batch), segments)
        width = shape[2]
        outputs = self.windows(frames, mask, rows,
                               tf.reshape(window_index, [-1, width]),
                               tf.reshape(window_mask, [-1, width]))
        return tf.reshape(outputs, tf.concat(
            [[batch, segments], tf.shape(outputs)[1:]], axis=0))

    def segments(self, frames, mask, window_index, window_mask, segment_mask):
        """Outputs [N, C] of the real windows (`segment_mask`), in order."""
        segment_mask = tf.cast(segment_mask, tf.bool)
        batch = tf.shape(window_index)[0]
        rows = tf.boolean_mask(tf.broadcast_to(
            tf.range(batch)[:, None], tf.shape(segment_mask)), segment_mask)
        return self.windows(frames, mask, rows,
                            tf.boolean_mask(window_index, segment_mask),
                            tf.boolean_mask(window_mask, segment_mask))

    def windows(self, frames, mask, rows, window_index, window_mask):
        """Outputs [N, C] of windows given by video `rows` [N], frame
        `window_index` [N, W] and `window_mask` [N, W]."""
        mask = tf.cast(mask, tf.bool)
        window_mask = tf.cast(window_mask, tf.bool)
        gather_at = tf.stack([tf.broadcast_to(rows[:, None],
                                              tf.shape(window_index)),
                              tf.cast(window_index, tf.int32)], axis=-1)
        values = {id(self.frames_input): frames, id(self.mask_input): mask}
        for node, action in self.plan:
            args, kwargs = node.arguments.fill_in(values)
            op = node.operation
            if action == "split":
                frame_mask = kwargs.get("mask")
                if frame_mask is None and len(args) > 1:
                    frame_mask = args[1]
                if frame_mask is None:
                    frame_mask = tf.ones(tf.shape(args[0])[:2], tf.bool)
                features = op.frame_features(args[0], mask=frame_mask,
                                             training=False)
                windows = tf.gather_nd(features, gather_at)
                windows = windows * tf.cast(window_mask,
                                            windows.dtype)[..., None]
                outputs = op.pool_frames(windows, mask=window_mask,
                                         training=False)
            else:
                outputs = _call(op, args, kwargs)
            for tensor, value in zip(node.outputs, tf.nest.flatten(outputs)):
                values[id(tensor)] = value
        return values[id(self.model.outputs[0])]


def windowed_model(model):
    """A WindowedModel over `model`'s layers; NotWindowable if some layer
    needs each window's frames (check `supports_windowed` first)."""
    return WindowedModel(model)


__all__ = ["WindowedModel", "windowed_model", "supports_windowed",
           "why_not_windowed", "NotWindowable", "is_splittable"]
