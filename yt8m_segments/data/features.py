"""Which per-frame features a model reads, parsed from the starter code's flags."""

import dataclasses

from yt8m_segments.data import records


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Names and widths of the per-frame features, concatenated in this order.

    Mirrors the starter code's `--feature_names=rgb,audio --feature_sizes=1024,128`.
    """

    names: tuple = records.DEFAULT_FEATURE_NAMES
    sizes: tuple = records.DEFAULT_FEATURE_SIZES

    def __post_init__(self):
        if len(self.names) != len(self.sizes):
            raise ValueError(
                f"feature_names {list(self.names)} and feature_sizes "
                f"{list(self.sizes)} must have the same length")
        if not self.names:
            raise ValueError("at least one feature name is needed")

    @property
    def total_size(self):
        return sum(self.sizes)

    def frame_level(self):
        """The frame features that video-level ones (`mean_rgb`) average."""
        prefix = records.VIDEO_LEVEL_PREFIX
        return FeatureSpec(tuple(name[len(prefix):] if name.startswith(prefix)
                                 else name for name in self.names), self.sizes)

    def video_level(self):
        """The video-level record features (`mean_rgb`) that average these."""
        prefix = records.VIDEO_LEVEL_PREFIX
        return FeatureSpec(tuple(name if name.startswith(prefix)
                                 else prefix + name for name in self.names),
                           self.sizes)

    @classmethod
    def from_flags(cls, feature_names, feature_sizes):
        """From comma-separated strings (or lists) as the flags give them."""
        if isinstance(feature_names, str):
            feature_names = feature_names.split(",")
        if isinstance(feature_sizes, str):
            feature_sizes = feature_sizes.split(",")
        names = tuple(n.strip() for n in feature_names if n.strip())
        sizes = tuple(int(s) for s in feature_sizes if str(s).strip())
        return cls(names, sizes)
