"""Per-class top-K selection and the challenge's CSV files (SPEC section 4).

Submission: header `Class,Segments`, then `<class id>,<seg> <seg> ...` best
first, `<seg>` being `<video id>:<start frame>`. Ground truth (rated validate
pairs): header `segment_id,class,score`, one rated (segment, class) per line.
"""

import re

import numpy as np
import tensorflow as tf

from yt8m_segments.atomic import atomic_open

SUBMISSION_HEADER = "Class,Segments"
GROUND_TRUTH_HEADER = "segment_id,class,score"

_SEGMENT = r"[^\s:,]+:\d+"
_SEGMENT_RE = re.compile(_SEGMENT)
_SUBMISSION_LINE_RE = re.compile(
    rf"\s*(\d+)\s*,\s*((?:{_SEGMENT}(?:\s+{_SEGMENT})*)?)\s*")

# 32 classes of a 2,062,258-segment test set: ~0.3 GB per float32/int32 temporary.
DEFAULT_BLOCK_SIZE = 32


def _top_k_blocks(scores, k, columns, block_size):
    """Yields (columns of the block, row indices [len(block), k]) for `columns`.

    The whole matrix is never converted: each block of columns is copied on its
    own as a contiguous float32 [block, N] array (exact for float16). The k-th
    largest value per class is the threshold; every row above it is kept, plus
    the lowest-index rows equal to it, so ties resolve exactly as a stable sort.
    """
    num_rows = scores.shape[0]
    for start in range(0, len(columns), block_size):
        block_columns = columns[start:start + block_size]
        block = np.ascontiguousarray(scores[:, block_columns].T, dtype=np.float32)
        if np.isnan(block).any():
            raise ValueError("scores contain NaN; cannot rank them")
        threshold = np.partition(block, num_rows - k, axis=1)[:, num_rows - k, None]
        above = block > threshold
        at = block == threshold
        room = k - above.sum(axis=1)
        tied = np.flatnonzero(at.sum(axis=1) > room)  # ties cross the k-th place
        at[tied] &= np.cumsum(at[tied], axis=1, dtype=np.int32) <= room[tied, None]
        keep = above | at
        rows = np.nonzero(keep)[1].reshape(len(block_columns), k)  # ascending rows
        order = np.argsort(-np.take_along_axis(block, rows, axis=1), axis=1,
                           kind="stable")
        yield block_columns, np.take_along_axis(rows, order, axis=1)


def _check_scores(scores, k):
    if scores.ndim != 2:
        raise ValueError(f"scores must be [segments, classes], got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(k, scores.shape[0])


def top_k_per_class(scores, k, block_size=DEFAULT_BLOCK_SIZE):
    """Row indices [C, min(k, N)] of each class's best segments, best first.

    Ties go to the lower row index. `scores` [N, C] may be a float16 memmap;
    memory stays O(block_size * N) beyond the result.
    """
    k = _check_scores(scores, k)
    num_classes = scores.shape[1]
    result = np.empty((num_classes, k), dtype=np.int64)
    if k == 0:
        return result
    for block_columns, rows in _top_k_blocks(scores, k, np.arange(num_classes),
                                             block_size):
        result[block_columns] = rows
    return result


def write_submission(path, segment_ids, scores, class_ids, k,
                     block_size=DEFAULT_BLOCK_SIZE):
    """Writes the submission CSV, classes ascending, at most k segments each.

    Streams block by block, so the [C, k] index matrix is never held whole.
    """
    segment_ids = np.asarray(segment_ids)
    class_ids = np.asarray(class_ids)
    k = _check_scores(scores, k)
    if segment_ids.shape != (scores.shape[0],):
        raise ValueError(f"{len(segment_ids)} segment ids for {scores.shape[0]} score rows")
    if class_ids.shape != (scores.shape[1],):
        raise ValueError(f"{len(class_ids)} class ids for {scores.shape[1]} score columns")
    if len(np.unique(class_ids)) != len(class_ids):
        raise ValueError("class ids are not unique")
    order = np.argsort(class_ids, kind="stable")
    with atomic_open(path) as handle:
        handle.write(SUBMISSION_HEADER + "\n")
        if k == 0:
            handle.write("".join(f"{class_ids[c]},\n" for c in order))
            return
        for block_columns, rows in _top_k_blocks(scores, k, order, block_size):
            handle.write("".join(
                f"{class_ids[c]},{' '.join(segment_ids[r].tolist())}\n"
                for c, r in zip(block_columns, rows)))


def _lines(path):
    """(line number, line without newline) for every line after the header."""
    with tf.io.gfile.GFile(path, "r") as handle:
        yield from enumerate((line.rstrip("\r\n") for line in handle), start=1)


def _check_header(path, lines, header):
    first = next(lines, None)
    if first is None or first[1].strip() != header:
        raise ValueError(f"{path}:1: expected header {header!r}, got "
                         f"{None if first is None else first[1][:80]!r}")


def _submission_line_error(line):
    """Why a line failed the submission pattern, for the error message."""
    class_id, comma, segments = line.partition(",")
    if not comma:
        return "missing comma between class id and segments"
    if not class_id.strip().isdigit():
        return f"bad class id {class_id.strip()[:40]!r}"
    bad = next((s for s in segments.split() if not _SEGMENT_RE.fullmatch(s)), None)
    if bad is None:
        return "malformed line"
    return f"bad segment {bad[:60]!r} (want <video id>:<start frame>)"


def read_submission(path):
    """dict class id -> list of segment ids, best first, as written in `path`.

    Raises ValueError naming the file and line for a malformed line, a repeated
    class, or a segment repeated within a class (it would count twice in AP).
    """
    lines = _lines(path)
    _check_header(path, lines, SUBMISSION_HEADER)
    ranked = {}
    for number, line in lines:
        if not line.strip():
            continue
        match = _SUBMISSION_LINE_RE.fullmatch(line)
        if match is None:
            raise ValueError(f"{path}:{number}: {_submission_line_error(line)}")
        class_id = int(match.group(1))
        segments = match.group(2).split()
        if class_id in ranked:
            raise ValueError(f"{path}:{number}: class {class_id} listed twice")
        if len(set(segments)) != len(segments):
            raise ValueError(f"{path}:{number}: a segment is listed twice for "
                             f"class {class_id}")
        ranked[class_id] = segments
    return ranked


def read_ground_truth(path):
    """dict class id -> dict segment id -> score for the rated pairs in `path`."""
    lines = _lines(path)
    _check_header(path, lines, GROUND_TRUTH_HEADER)
    ground_truth = {}
    for number, line in lines:
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 fields "
                             f"segment_id,class,score, got {len(fields)}")
        segment_id, class_id, score = fields
        if not _SEGMENT_RE.fullmatch(segment_id):
            raise ValueError(f"{path}:{number}: bad segment id {segment_id[:60]!r} "
                             "(want <video id>:<start frame>)")
        if not class_id.isdigit():
            raise ValueError(f"{path}:{number}: bad class id {class_id[:40]!r}")
        try:
            score = float(score)
        except ValueError:
            raise ValueError(f"{path}:{number}: bad score {score[:40]!r}") from None
        ratings = ground_truth.setdefault(int(class_id), {})
        if segment_id in ratings:
            raise ValueError(f"{path}:{number}: ({segment_id}, {class_id}) rated twice")
        ratings[segment_id] = score
    return ground_truth


def write_ground_truth(path, ground_truth):
    """Writes `ground_truth` (as read_ground_truth returns it), classes ascending."""
    with atomic_open(path) as handle:
        handle.write(GROUND_TRUTH_HEADER + "\n")
        for class_id in sorted(ground_truth):
            handle.write("".join(
                f"{segment_id},{class_id},{float(score)!r}\n"
                for segment_id, score in ground_truth[class_id].items()))
