"""What a training run leaves in its train_dir, and how later stages read it.

`model.keras` holds architecture and weights; `run_config.json` holds what the
model file does not: the model config (to rebuild it with other classes), the
class id of every output column, and the input features.
"""

import json
import os

import keras
import tensorflow as tf

from yt8m_segments import atomic
from yt8m_segments import files
from yt8m_segments import precision
from yt8m_segments.data import classes
from yt8m_segments.data.features import FeatureSpec
# The registry imports every layer and model, registering them for load_model.
from yt8m_segments.models.registry import ModelConfig

MODEL_FILE = "model.keras"
CONFIG_FILE = "run_config.json"


def save_run(train_dir, model, model_config, class_ids, feature_spec, extra=None):
    """Write model and config atomically (the model via a temp file + rename)."""
    tf.io.gfile.makedirs(train_dir)
    model_path = os.path.join(train_dir, MODEL_FILE)
    with atomic.atomic_path(model_path) as tmp_path:
        model.save(tmp_path)
    config = {
        "model_config": model_config.to_dict(),
        "class_ids": [int(c) for c in class_ids],
        "feature_names": list(feature_spec.names),
        "feature_sizes": list(feature_spec.sizes),
        **(extra or {}),
    }
    with atomic.atomic_open(os.path.join(train_dir, CONFIG_FILE)) as handle:
        json.dump(config, handle, indent=2)


def has_run(train_dir):
    return tf.io.gfile.exists(os.path.join(train_dir, MODEL_FILE))


class Run:
    """A finished training run loaded from its train_dir."""

    def __init__(self, train_dir):
        model_path = os.path.join(train_dir, MODEL_FILE)
        config_path = os.path.join(train_dir, CONFIG_FILE)
        for path in (model_path, config_path):
            if not tf.io.gfile.exists(path):
                raise FileNotFoundError(
                    f"{path} not found: is '{train_dir}' the train_dir of a "
                    "finished training run?")
            files.check_readable(path)
        with tf.io.gfile.GFile(config_path) as handle:
            config = json.load(handle)
        self.train_dir = train_dir
        self.config = config
        self.model_config = ModelConfig.from_dict(config["model_config"])
        self.class_ids = config["class_ids"]
        self.feature_spec = FeatureSpec(tuple(config["feature_names"]),
                                        tuple(config["feature_sizes"]))
        self.model = keras.saving.load_model(model_path)

    def model_in(self, mixed_precision):
        """The model under the dtype policy `mixed_precision` (precision.py):
        runs are saved in float32; another policy rebuilds it."""
        return precision.rebuild(self.model, self.model_config,
                                 mixed_precision)

    def segment_class_ids(self, segment_labels_file=None, data_pattern=None,
                          **input_options):
        """The classes to rank: the file's; else a fine-tuned run's own; else
        those rated in `data_pattern`'s records (read with `input_options`)."""
        if segment_labels_file:
            return classes.read_segment_label_ids(segment_labels_file)
        if self.config.get("stage") == "finetune":
            return self.class_ids
        if data_pattern:
            return classes.segment_label_ids_from_records(
                data_pattern, vocabulary_size=len(self.class_ids),
                **input_options)
        raise ValueError(
            f"{self.train_dir} predicts the whole vocabulary; name the segment "
            "classes with --segment_labels_file")

    @property
    def reads_mean_frame(self):
        """Trained on video-level records: feed it `parsing.mean_frame`."""
        return self.config.get("frame_features", True) is False

    def context_frames(self, override=None):
        """Context frames per side: `override`, else what the run trained with."""
        if override is not None:
            return override
        return self.config.get("context_frames", 0)

    def columns_for(self, class_ids):
        """Output columns of the given class ids; an error names any missing."""
        position = {c: i for i, c in enumerate(self.class_ids)}
        missing = [c for c in class_ids if c not in position]
        if missing:
            raise ValueError(
                f"the model in {self.train_dir} has no output for classes "
                f"{missing[:10]}{'...' if len(missing) > 10 else ''}")
        return [position[c] for c in class_ids]
