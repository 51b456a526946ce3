"""PNG report of a cache's evaluation (optional extra `plots`: matplotlib).

Left: histogram of per-class AP@K with the MAP marked. Right: MAP@K against
the top-k refinement's k (`--refine=topk --refine_topk=k`: a class is kept
for a video's segments only if it is among the video's k best classes), with
the unrefined MAP as a reference line; when the cache has no video-level
probabilities the right panel says so instead.
"""

import os

import numpy as np

from yt8m_segments.atomic import atomic_path

INSTALL_HINT = ("the report needs matplotlib: pip install 'yt8m_segments[plots]' "
                "(or pip install matplotlib)")


def _pyplot():
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def write_report(path, per_class, k, topk_curve=None, title=None):
    """Write the PNG to `path`.

    per_class: {class id: AP@k} (metrics.segment_ap_per_class).
    topk_curve: [(topk, MAP@k)] or None (no video-level probabilities).
    """
    plt = _pyplot()
    values = np.array(list(per_class.values()), dtype=np.float64)
    mean = float(values.mean()) if len(values) else float("nan")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.hist(values, bins=np.linspace(0.0, 1.0, 21), color="#4477aa",
              edgecolor="white")
    left.axvline(mean, color="#cc3311", linestyle="--",
                 label=f"MAP@{k} = {mean:.4f}")
    left.set_xlim(0.0, 1.0)
    left.set_xlabel(f"AP@{k} of a class")
    left.set_ylabel("classes")
    left.set_title(f"Per-class AP ({len(values)} classes with a positive)")
    left.legend(loc="upper right" if mean < 0.5 else "upper left")
    if topk_curve:
        topks = [t for t, _ in topk_curve]
        maps = [m for _, m in topk_curve]
        right.plot(topks, maps, marker="o", color="#228833",
                   label="--refine=topk")
        for topk, value in topk_curve:
            right.annotate(f"{value:.3f}", (topk, value),
                           textcoords="offset points", xytext=(0, 6),
                           ha="center", fontsize=8)
        right.axhline(mean, color="#cc3311", linestyle="--",
                      label=f"no refinement ({mean:.4f})")
        right.margins(y=0.15)
        right.set_xscale("log")
        right.set_xticks(topks)
        right.set_xticklabels([str(t) for t in topks])
        right.set_xlabel("refine_topk: classes kept per video")
        right.set_ylabel(f"MAP@{k}")
        right.set_title("MAP against the top-k refinement")
        right.legend(loc="lower right")
    else:
        right.axis("off")
        right.text(0.5, 0.5, "MAP against refinement: not drawn\n(the cache "
                   "has no video-level probabilities;\nwrite it with "
                   "--video_train_dir)", ha="center", va="center",
                   fontsize=11, transform=right.transAxes)
    if title:
        figure.suptitle(str(title), fontsize=9)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        with atomic_path(path) as tmp_path:
            figure.savefig(tmp_path, dpi=100, format="png")
    finally:
        plt.close(figure)
    return path
