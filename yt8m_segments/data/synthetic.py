"""A small YouTube-8M-Segments-like dataset with planted, learnable structure.

Writes real-format records (docs/format.md), and `generator.json` (seed
and options, for the oracle: `class_patterns`), so the whole pipeline
(pretrain on video labels -> fine-tune on rated segments -> infer on test ->
MAP@K) can run end to end without the 1.5 TB download. The command is
`python -m yt8m_segments.synthetic` (yt8m_segments/synthetic.py).

Generative model (all draws from `np.random.default_rng`, one child stream per
split, so a seed fixes every byte):

* World. `num_active_classes` classes, drawn from the lower half of the
  vocabulary (real indices are frequency ranked), occur at all; their
  frequency is Zipf-like (weight 1 / (rank + 2)). They are partitioned into
  confusable groups of 2 or 3. Class c's pattern in the 1152-d frame space
  (rgb 1024 + audio 128) is
      p_c = PATTERN_NORM * (sqrt(SHARED) * g_group + sqrt(1 - SHARED) * s_c)
  with g, s independent random unit vectors and SHARED = `shared_fraction`:
  group mates have cosine ~SHARED (they look alike) and differ only by the
  specific parts.
  `num_segment_classes` of the active classes are rated at segment level.
* Video. Length T ~ U[min_frames, max_frames], one frame per second. Scene
  cuts (about one per 15 s) split it into scenes, each with its own Gaussian
  background vector (std `background_std` per dimension); every frame adds
  Gaussian noise (std `noise_std`). 1-4 entities: the first by Zipf
  frequency (in validate/test: among segment classes, cycling through all of
  them for the first videos so each is guaranteed); each further one is,
  with probability PARTNER_PROB, a group mate of an entity already present, else
  another Zipf draw. An entity is present only in 1-2 contiguous runs
  covering 20-60% of the full 5-frame windows (a partial last window is
  background only, so every entity has a ratable positive); a group mate is
  placed where its mates are absent, so confusable classes co-occur in a
  video but at different times. With probability `full_video_prob` the first
  entity instead fills every full window (no negative windows for it there);
  its group mates then find no free frames and are left out. Where present,
  a frame adds strength * p_c with strength ~ `signal_strength` *
  U(STRENGTH_LOW, STRENGTH_HIGH) per (video, entity), jittered per frame.
  Values stay mostly inside the quantization range [-2, 2].
* Video labels (noisy, like the machine-generated ones): each true entity is
  dropped with probability `label_drop_prob` (at least one label kept); with
  probability `spurious_label_prob` one spurious label is added, half the
  time a group mate of a true entity, else a Zipf draw.
* Ratings (validate records, test ground truth): about 5 (segment, class)
  pairs per video for segment classes only, ~55% positive. A positive is a
  full 5-frame window (start multiple of 5, start + 5 <= T) where the entity
  is present in >= 3 frames; a negative is a window where it is present in
  none, taken from videos that carry the class (as an entity or a label),
  or a group mate rated on a window where its confusable partner is present
  (hard negative, drawn HARD_NEGATIVE_WEIGHT times as often). Windows with
  1-2 frames of the entity are never rated.

So video labels are correlated across group mates, which a model trained on
video labels alone cannot separate at window level; fine-tuning on rated
segments can, through the class-specific pattern parts.

Difficulty options (`DEFAULTS`; the defaults reproduce the original bytes):
`signal_strength` < 1 weakens the signal, larger `noise_std` /
`background_std` bury it, larger `shared_fraction` makes group mates more
alike, `label_drop_prob` / `spurious_label_prob` set the video-label noise,
and `full_video_prob` > 0 mixes in videos that show their first entity
throughout (no negative windows to learn from there).
"""

import csv
import json
import os

import numpy as np

from yt8m_segments.atomic import atomic_open
from yt8m_segments.data import records

FEATURE_SIZE = sum(records.DEFAULT_FEATURE_SIZES)
RGB_SIZE = records.DEFAULT_FEATURE_SIZES[0]
SEG = records.FRAMES_PER_SEGMENT

# Generative constants (see module docstring).
BACKGROUND_STD = 0.35
NOISE_STD = 0.3
PATTERN_NORM = 2.5
SHARED = 0.6
STRENGTH_LOW, STRENGTH_HIGH = 0.5, 1.3
STRENGTH_JITTER = 0.2
SCENE_SECONDS = 15.0
ENTITY_COUNT_PROBS = (0.3, 0.35, 0.25, 0.1)  # 1, 2, 3, 4 entities
PARTNER_PROB = 0.5
COVERAGE_LOW, COVERAGE_HIGH = 0.2, 0.6
LABEL_DROP_PROB = 0.15
SPURIOUS_PROB = 0.2
FULL_VIDEO_PROB = 0.0
RATINGS_PER_VIDEO = (4, 5, 6)
POSITIVE_FRACTION = 0.55
HARD_NEGATIVE_WEIGHT = 3.0  # hard negatives are favoured when drawing negatives

DEFAULTS = dict(num_classes=records.NUM_CLASSES, num_active_classes=40,
                num_segment_classes=20, min_frames=30, max_frames=90,
                num_files_per_split=2, signal_strength=1.0,
                noise_std=NOISE_STD, background_std=BACKGROUND_STD,
                shared_fraction=SHARED, label_drop_prob=LABEL_DROP_PROB,
                spurious_label_prob=SPURIOUS_PROB,
                full_video_prob=FULL_VIDEO_PROB)
_PROBABILITIES = ("shared_fraction", "label_drop_prob", "spurious_label_prob",
                  "full_video_prob")

VOCABULARY_COLUMNS = ("Index", "TrainVideoCount", "KnowledgeGraphId", "Name",
                      "WikiUrl", "Vertical1", "Vertical2", "Vertical3",
                      "WikiDescription")
_ID_ALPHABET = np.array(list(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
_SPLITS = ("train", "validate", "test")
# seed and options of a generated dataset, for the oracle (class_patterns)
GENERATOR_FILE = "generator.json"


def _options(options):
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown options: {sorted(unknown)}")
    opts = dict(DEFAULTS, **options)
    if not 2 <= opts["num_active_classes"] <= opts["num_classes"]:
        raise ValueError("need 2 <= num_active_classes <= num_classes")
    if not 1 <= opts["num_segment_classes"] <= opts["num_active_classes"]:
        raise ValueError("need 1 <= num_segment_classes <= num_active_classes")
    if not 2 * SEG <= opts["min_frames"] <= opts["max_frames"]:
        raise ValueError(f"need {2 * SEG} <= min_frames <= max_frames")
    if opts["num_files_per_split"] < 1:
        raise ValueError("num_files_per_split must be >= 1")
    # float(): a numpy float64 scalar would promote the float32 frames.
    for name in ("signal_strength", "noise_std", "background_std",
                 *_PROBABILITIES):
        opts[name] = float(opts[name])
    if not opts["signal_strength"] > 0:
        raise ValueError("signal_strength must be > 0")
    for name in ("noise_std", "background_std"):
        if not opts[name] >= 0:
            raise ValueError(f"{name} must be >= 0")
    for name in _PROBABILITIES:
        if not 0 <= opts[name] <= 1:
            raise ValueError(f"{name} must be in [0, 1]")
    return opts


def _streams(seed):
    """Independent generators: world, ids, then one per split.

    Separate streams keep e.g. the validate data unchanged when only the
    number of train videos changes (ids aside).
    """
    children = np.random.SeedSequence(seed).spawn(2 + len(_SPLITS))
    return [np.random.default_rng(child) for child in children]


def _unit_rows(rng, n):
    vectors = rng.standard_normal((n, FEATURE_SIZE))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _make_world(rng, opts):
    """Active classes, confusable groups, Zipf weights, segment classes, patterns."""
    num_active = opts["num_active_classes"]
    pool = max(num_active, opts["num_classes"] // 2)
    active = np.sort(rng.choice(pool, num_active, replace=False))
    weights = 1.0 / (np.arange(num_active) + 2.0)
    weights /= weights.sum()

    # Confusable groups of 2 (70%) or 3 over a random order of the actives.
    order = rng.permutation(num_active)
    groups, i = [], 0
    while i < num_active:
        size = 3 if rng.random() < 0.3 else 2
        if num_active - (i + size) == 1:
            size += 1  # never leave a singleton
        groups.append(np.sort(order[i:i + size]))
        i += size
    group_of = np.empty(num_active, np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g

    shared = _unit_rows(rng, len(groups))
    specific = _unit_rows(rng, num_active)
    fraction = opts["shared_fraction"]
    patterns = PATTERN_NORM * (np.sqrt(fraction) * shared[group_of]
                               + np.sqrt(1.0 - fraction) * specific)

    segment_local = rng.choice(num_active, opts["num_segment_classes"],
                               replace=False)
    return dict(active=active, weights=weights, groups=groups,
                group_of=group_of, patterns=patterns.astype(np.float32),
                segment_local=np.sort(segment_local),
                segment_file_order=active[rng.permutation(segment_local)])


def class_patterns(seed, **options):
    """{class id: float32 [1152] pattern} for the world `generate` would build.

    The expected feature offset (before quantization) that a present entity
    adds to a frame at strength 1; for tests and diagnostics.
    """
    world = _make_world(_streams(seed)[0], _options(options))
    return {int(c): world["patterns"][i] for i, c in enumerate(world["active"])}


def _video_ids(rng, total):
    """`total` distinct 4-character alphanumeric ids."""
    alphabet = len(_ID_ALPHABET)
    if total > alphabet ** 4:
        raise ValueError("too many videos for 4-character ids")
    codes = rng.choice(alphabet ** 4, total, replace=False)
    digits = (codes[:, None] // alphabet ** np.arange(3, -1, -1)) % alphabet
    return ["".join(row) for row in _ID_ALPHABET[digits]]


def _zipf_draw(rng, world, exclude):
    weights = world["weights"].copy()
    weights[list(exclude)] = 0.0
    if weights.sum() == 0:
        return None
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _mates(world, local):
    members = world["groups"][world["group_of"][local]]
    return [int(m) for m in members if m != local]


def _place_runs(rng, span, coverage, free):
    """Boolean [span] mask of 1-2 runs (>= 5 frames each) inside `free`."""
    total = max(SEG, int(round(coverage * span)))
    num_runs = 1 if total < 3 * SEG else int(rng.integers(1, 3))
    mask = np.zeros(span, bool)
    for _ in range(num_runs):
        length = max(SEG, total // num_runs)
        while length >= SEG:
            # starts whose whole run lies in free frames
            ok = np.concatenate([[0], np.cumsum(free & ~mask)])
            starts = np.flatnonzero(ok[length:] - ok[:-length] == length)
            if starts.size:
                start = int(rng.choice(starts))
                mask[start:start + length] = True
                break
            length -= SEG
    return mask


def _choose_entities(rng, world, first):
    """Local class indices of a video's entities; mates come in pairs."""
    count = int(rng.choice(len(ENTITY_COUNT_PROBS), p=ENTITY_COUNT_PROBS)) + 1
    chosen = [first if first is not None else _zipf_draw(rng, world, [])]
    while len(chosen) < count:
        mates = sorted({m for c in chosen for m in _mates(world, c)} - set(chosen))
        if mates and rng.random() < PARTNER_PROB:
            chosen.append(int(rng.choice(mates)))
        else:
            nxt = _zipf_draw(rng, world, chosen)
            if nxt is None:
                break
            chosen.append(nxt)
    return chosen


def _noisy_labels(rng, world, opts, present):
    """Video labels: drop true ones, sometimes add a spurious (often a mate)."""
    keep = rng.random(len(present)) >= opts["label_drop_prob"]
    if not keep.any():
        keep[rng.integers(len(present))] = True
    labels = {c for c, k in zip(present, keep) if k}
    if rng.random() < opts["spurious_label_prob"]:
        mates = sorted({m for c in present for m in _mates(world, c)} - set(present))
        if mates and rng.random() < 0.5:
            labels.add(int(rng.choice(mates)))
        else:
            extra = _zipf_draw(rng, world, present)
            if extra is not None:
                labels.add(extra)
    return sorted(labels)


def _rate(rng, world, counts, present, labels, forced):
    """(window, local class, score) triples for one video; see docstring.

    counts: [num_windows, len(present)] frames of each entity per full window.
    """
    seg_set = set(world["segment_local"].tolist())
    num_windows = counts.shape[0]
    col = {c: j for j, c in enumerate(present)}
    pos, neg, neg_w = [], [], []
    for c in sorted(seg_set & (set(present) | set(labels))):
        cnt = counts[:, col[c]] if c in col else np.zeros(num_windows)
        pos += [(int(w), c) for w in np.flatnonzero(cnt >= 3)]
        neg += [(int(w), c) for w in np.flatnonzero(cnt == 0)]
        neg_w += [1.0] * int((cnt == 0).sum())
    # Hard negatives: a segment-class mate rated where its partner is present.
    for c in present:
        for m in _mates(world, c):
            if m not in seg_set:
                continue
            mate_cnt = counts[:, col[m]] if m in col else np.zeros(num_windows)
            windows = np.flatnonzero((counts[:, col[c]] >= 3) & (mate_cnt == 0))
            for w in windows:
                if (int(w), m) in neg:
                    neg_w[neg.index((int(w), m))] = HARD_NEGATIVE_WEIGHT
                else:
                    neg.append((int(w), m))
                    neg_w.append(HARD_NEGATIVE_WEIGHT)

    n_pairs = int(rng.choice(RATINGS_PER_VIDEO))
    n_pos = int(rng.binomial(n_pairs, POSITIVE_FRACTION))
    n_pos = min(max(n_pos, 1 if pos else 0), len(pos))
    n_neg = min(n_pairs - n_pos, len(neg))
    n_pos = min(n_pairs - n_neg, len(pos))

    rated = []
    if forced is not None and n_pos:
        own = [i for i, (_, c) in enumerate(pos) if c == forced]
        if own:  # guarantees every segment class a positive per rated split
            rated.append(pos.pop(int(rng.choice(own))) + (1.0,))
            n_pos -= 1
    if n_pos:
        for i in rng.choice(len(pos), n_pos, replace=False):
            rated.append(pos[i] + (1.0,))
    if n_neg:
        p = np.asarray(neg_w) / np.sum(neg_w)
        for i in rng.choice(len(neg), n_neg, replace=False, p=p):
            rated.append(neg[i] + (0.0,))
    return sorted(rated)


def _make_video(rng, world, opts, rated_split, forced):
    """One video: uint8 frames, noisy labels, and (if rated_split) ratings."""
    num_frames = int(rng.integers(opts["min_frames"], opts["max_frames"] + 1))
    num_windows = num_frames // SEG
    span = num_windows * SEG  # entities live in full windows only

    first = forced
    if rated_split and first is None:  # rated videos show a segment class
        seg = world["segment_local"]
        w = world["weights"][seg]
        first = int(rng.choice(seg, p=w / w.sum()))
    entities = _choose_entities(rng, world, first)

    masks, present = [], []
    for k, c in enumerate(entities):
        free = np.ones(span, bool)
        for c2, m2 in zip(present, masks):
            if world["group_of"][c2] == world["group_of"][c]:
                free &= ~m2[:span]
        # No draw at probability 0: the default stream stays as it was.
        if (k == 0 and opts["full_video_prob"] > 0
                and rng.random() < opts["full_video_prob"]):
            mask = np.ones(span, bool)
        else:
            coverage = rng.uniform(COVERAGE_LOW, COVERAGE_HIGH)
            mask = _place_runs(rng, span, coverage, free)
        if mask.sum() >= SEG:
            present.append(c)
            masks.append(np.pad(mask, (0, num_frames - span)))
    masks = np.stack(masks, axis=1).astype(np.float32)  # [T, E]

    num_cuts = min(rng.poisson(num_frames / SCENE_SECONDS), num_frames - 1)
    cuts = np.sort(rng.choice(np.arange(1, num_frames), num_cuts, replace=False))
    scene = np.searchsorted(cuts, np.arange(num_frames), side="right")
    background = opts["background_std"] * rng.standard_normal(
        (num_cuts + 1, FEATURE_SIZE), dtype=np.float32)
    scale = opts["signal_strength"]
    strength = rng.uniform(scale * STRENGTH_LOW, scale * STRENGTH_HIGH,
                           len(present))
    jitter = 1.0 + STRENGTH_JITTER * rng.standard_normal(masks.shape)
    weight = (masks * strength * jitter).astype(np.float32)
    frames = (background[scene]
              + opts["noise_std"] * rng.standard_normal(
                  (num_frames, FEATURE_SIZE), dtype=np.float32)
              + weight @ world["patterns"][present])

    labels = _noisy_labels(rng, world, opts, present)
    video = dict(num_frames=num_frames, frames=records.quantize(frames),
                 labels=world["active"][labels].tolist(),
                 entities=world["active"][present].tolist(), rated=[])
    if rated_split:
        counts = masks[:span].reshape(num_windows, SEG, -1).sum(1)
        video["rated"] = [(w * SEG, int(world["active"][c]), s) for w, c, s in
                          _rate(rng, world, counts, present, labels,
                                forced)]
    return video


def _video_level_example(video_id, labels, features):
    """The 2018 video-level record of a video: its dequantized frame means."""
    return records.make_video_level_example(video_id, labels, {
        records.VIDEO_LEVEL_PREFIX + name: records.dequantize(
            frames.astype(np.float32)).mean(axis=0)
        for name, frames in features.items()})


def _write_split(rng, world, opts, split, ids, output_dir, split_summary,
                 label_counts, ground_truth, video_level=False):
    """Generate and write one split's record files, filling the summaries.

    With `video_level`, also the split's 2018-style video-level records
    (`<split>_video-*.tfrecord`, same videos and labels).
    """
    rated_split = split != "train"
    n_seg = len(world["segment_local"])
    forced_order = rng.permutation(world["segment_local"])
    num_files = max(1, min(opts["num_files_per_split"], len(ids)))
    pos_per_class = {int(world["active"][c]): 0 for c in world["segment_local"]}
    video_level_examples = []

    def examples(chunk_ids, offset):
        for k, video_id in enumerate(chunk_ids):
            index = offset + k
            forced = (int(forced_order[index])
                      if rated_split and index < n_seg else None)
            video = _make_video(rng, world, opts, rated_split, forced)
            split_summary["frames"] += video["num_frames"]
            split_summary["segments"] += -(-video["num_frames"] // SEG)
            for c in video["labels"]:
                label_counts[c] += split == "train"
            for start, c, score in video["rated"]:
                split_summary["positives" if score else "negatives"] += 1
                pos_per_class[c] += int(score)
            split_summary["rated_segments"] += len({r[0] for r in video["rated"]})
            features = {
                "rgb": video["frames"][:, :RGB_SIZE],
                "audio": video["frames"][:, RGB_SIZE:],
            }
            if video_level:
                video_level_examples.append(_video_level_example(
                    video_id, video["labels"], features))
            if split == "validate":
                starts, classes, scores = (zip(*video["rated"]) if video["rated"]
                                           else ((), (), ()))
                yield records.make_frame_example(
                    video_id, video["labels"], features,
                    segment_start_times=starts, segment_labels=classes,
                    segment_scores=scores)
            else:
                if split == "test":
                    ground_truth.extend((f"{video_id}:{s}", c, sc)
                                        for s, c, sc in video["rated"])
                yield records.make_frame_example(
                    video_id, video["labels"] if split == "train" else [],
                    features)

    offset = 0
    for i, chunk in enumerate(np.array_split(np.asarray(ids, object), num_files)):
        name = f"{split}-{i:05d}-of-{num_files:05d}.tfrecord"
        records.write_records(os.path.join(output_dir, name),
                              examples(list(chunk), offset))
        split_summary["files"].append(name)
        if video_level:
            name = f"{split}_video-{i:05d}-of-{num_files:05d}.tfrecord"
            records.write_records(os.path.join(output_dir, name),
                                  video_level_examples)
            split_summary.setdefault("video_level_files", []).append(name)
            video_level_examples.clear()
        offset += len(chunk)
    split_summary["videos"] = len(ids)
    if rated_split:
        split_summary["min_positives_per_segment_class"] = min(
            pos_per_class.values())


def _write_vocabulary(path, world, opts, label_counts):
    local_of = {int(c): i for i, c in enumerate(world["active"])}
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(VOCABULARY_COLUMNS)
        for index in range(opts["num_classes"]):
            name = f"Entity {index}"
            if index in local_of:
                group = int(world["group_of"][local_of[index]])
                mates = [int(world["active"][m])
                         for m in _mates(world, local_of[index])]
                vertical = f"Group {group}"
                description = (f'Synthetic entity {index}, confusable with '
                               f'{", ".join(map(str, mates))} ("{vertical}").')
            else:
                vertical = "Unused"
                description = f"Synthetic entity {index}, never shown."
            writer.writerow([index, label_counts.get(index, 0),
                             f"/m/0s{index:05x}", name,
                             f"https://en.wikipedia.org/wiki/Entity_{index}",
                             vertical, "", "", description])


def generate(output_dir, num_train_videos, num_validate_videos, num_test_videos,
             seed, video_level=False, **options):
    """Write the synthetic dataset into `output_dir`; return a summary dict.

    options: the keys of DEFAULTS (sizes, and the difficulty options of the
    module docstring). With `video_level`, the train split also gets
    2018-style video-level records (`train_video-*.tfrecord`: `mean_rgb`,
    `mean_audio`, the same labels).
    """
    opts = _options(options)
    world_rng, id_rng, *split_rngs = _streams(seed)
    world = _make_world(world_rng, opts)
    counts = dict(train=num_train_videos, validate=num_validate_videos,
                  test=num_test_videos)
    ids = _video_ids(id_rng, sum(counts.values()))
    os.makedirs(output_dir, exist_ok=True)

    summary = dict(seed=seed, options=opts,
                   active_class_ids=world["active"].tolist(),
                   segment_class_ids=world["active"][world["segment_local"]].tolist(),
                   confusable_groups=[world["active"][g].tolist()
                                      for g in world["groups"]])
    label_counts = {int(c): 0 for c in world["active"]}
    ground_truth = []
    start = 0
    for split, rng in zip(_SPLITS, split_rngs):
        split_summary = dict(files=[], videos=0, frames=0, segments=0,
                             rated_segments=0, positives=0, negatives=0)
        _write_split(rng, world, opts, split, ids[start:start + counts[split]],
                     output_dir, split_summary, label_counts, ground_truth,
                     video_level=video_level and split == "train")
        start += counts[split]
        summary[split] = split_summary

    _write_vocabulary(os.path.join(output_dir, "vocabulary.csv"), world, opts,
                      label_counts)
    with atomic_open(os.path.join(output_dir, "segment_label_ids.csv")) as f:
        f.write("Index\n" + "".join(f"{c}\n" for c in world["segment_file_order"]))
    with atomic_open(os.path.join(output_dir, "test_ground_truth.csv")) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["segment_id", "class", "score"])
        writer.writerows((sid, c, f"{score:.1f}") for sid, c, score in ground_truth)
    with atomic_open(os.path.join(output_dir, GENERATOR_FILE)) as f:
        json.dump({"seed": seed, "options": opts}, f, indent=1)
    return summary


def read_generator_file(path):
    """(seed, options) of the dataset whose `generator.json` is at `path`:
    what `class_patterns(seed, **options)` needs for the oracle."""
    with open(path) as handle:
        generator = json.load(handle)
    return generator["seed"], generator["options"]
