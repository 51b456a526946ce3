"""Per-class top-K selection and the challenge's CSV files (docs/metric.md).

Submission: header `Class,Segments`, then `<class id>,<seg> <seg> ...` best
first, `<seg>` being `<video id>:<start frame>`. Ground truth (rated validate
pairs): header `segment_id,class,score`, one rated (segment, class) per line.
"""

import collections
import concurrent.futures
import re

import numpy as np

from yt8m_segments import files
from yt8m_segments.atomic import atomic_open

SUBMISSION_HEADER = "Class,Segments"
GROUND_TRUTH_HEADER = "segment_id,class,score"

_SEGMENT = r"[^\s:,]+:\d+"
_SEGMENT_RE = re.compile(_SEGMENT)
_SUBMISSION_LINE_RE = re.compile(
    rf"\s*(\d+)\s*,\s*((?:{_SEGMENT}(?:\s+{_SEGMENT})*)?)\s*")

# 32 classes of a 2,062,258-segment test set: ~0.26 GB per float32 block.
DEFAULT_BLOCK_SIZE = 32
# Column pass size: classes read per pass over a row-major cache file. 2 GB of
# fp16 is ~500 classes of the real test set, i.e. 2 passes over its 4.1 GB.
DEFAULT_MEMORY_BUDGET = 2 << 30
DEFAULT_WORKERS = 2


class DenseColumns:
    """Column blocks of an in-memory [N, C] matrix (or a memmap)."""

    def __init__(self, scores):
        self.scores = scores
        self.shape = scores.shape
        self.dtype = scores.dtype

    def columns_transposed(self, columns):
        return np.ascontiguousarray(self.scores[:, columns].T)


# float16 -> float32 through a 65,536-entry table: numpy's own conversion
# takes ~14 ns per subnormal value (small probabilities are subnormal in fp16).
F16_TO_F32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def float16_to_float32(values):
    """Exact float16 -> float32 of an array, via the lookup table."""
    values = np.asarray(values)
    return F16_TO_F32[values.view(np.uint16)]


def order_keys(values):
    """Unsigned integer keys ordered exactly as the float `values` (float16 ->
    uint16, else float32 -> uint32); -0 equals +0. Raises on NaN."""
    values = np.asarray(values)
    if values.dtype == np.float16:
        bits = values.view(np.uint16)
        if ((bits & 0x7FFF) > 0x7C00).any():
            raise ValueError("scores contain NaN; cannot rank them")
        sign, unsigned = np.uint16(0x8000), np.uint16
    else:
        values = np.asarray(values, dtype=np.float32)
        if np.isnan(values).any():
            raise ValueError("scores contain NaN; cannot rank them")
        bits = (values + np.float32(0.0)).view(np.uint32)  # -0 + 0 = +0
        sign, unsigned = np.uint32(0x80000000), np.uint32
    if values.dtype == np.float16:
        bits = np.where(bits == sign, unsigned(0), bits)  # -0 -> +0
    return np.where(bits & sign, ~bits, bits | sign)


def _kth_largest_key(row, k):
    """The k-th largest of a uint16 or uint32 key row, by histograms."""
    if row.dtype == np.uint16:
        counts = np.bincount(row, minlength=1 << 16)
        at_least = np.cumsum(counts[::-1])
        return (1 << 16) - 1 - int(np.searchsorted(at_least, k))
    high = (row >> 16).astype(np.uint16)
    counts = np.bincount(high, minlength=1 << 16)
    at_least = np.cumsum(counts[::-1])
    bucket_rank = int(np.searchsorted(at_least, k))
    bucket = (1 << 16) - 1 - bucket_rank
    above = int(at_least[bucket_rank - 1]) if bucket_rank else 0
    low = (row[high == bucket] & 0xFFFF).astype(np.uint16)
    return (bucket << 16) | _kth_largest_key(low, k - above)


def _top_k_rows(keys, k):
    """Column indices [len(keys), k] of each row's k largest keys, best first.

    The k-th largest key per row (from histograms, no sort) is the
    threshold; every index above it is kept, plus the lowest-index ones equal
    to it, so ties resolve exactly as a stable sort (lower index first).
    """
    result = np.empty((len(keys), k), dtype=np.int64)
    for i, row in enumerate(keys):
        threshold = row.dtype.type(_kth_largest_key(row, k))
        chosen = np.flatnonzero(row > threshold)
        if len(chosen) < k:
            tied = np.flatnonzero(row == threshold)[:k - len(chosen)]
            chosen = np.concatenate([chosen, tied])
        # Descending keys, stable: equal keys keep ascending index order (ties
        # at the threshold come after the larger keys and are ascending too).
        result[i] = chosen[np.argsort(~row[chosen], kind="stable")]
    return result


def _block_keys(raw, block_columns, refiner):
    """Order keys of a [classes, N] block, refined. float16 blocks stay
    16-bit unless the refinement fuses scores (then float32)."""
    if refiner is not None and refiner.fuses:
        return order_keys(refiner.scores(raw, block_columns))
    if raw.dtype != np.float16:
        raw = refiner.scores(raw, block_columns) if refiner else raw
        return order_keys(raw)
    keys = order_keys(raw)
    if refiner is not None:
        dropped = refiner.drop_mask(block_columns)
        if dropped is not None:
            np.copyto(keys, keys.dtype.type(0), where=dropped)  # below all
    return keys


def _top_k_blocks(source, k, columns, block_size, refiner=None,
                  memory_budget=DEFAULT_MEMORY_BUDGET, workers=DEFAULT_WORKERS):
    """Yields (columns of the block, row indices [len(block), k]) in order.

    `source` gives `columns_transposed(columns)` -> [len, N] (DenseColumns, or
    cache.NpyReader for a cache file: one sequential pass per group of
    columns that fits `memory_budget`). Each block of `block_size` columns is
    turned into integer order keys (float16: its bits, no conversion),
    refined (`refiner`, see refine.py), and ranked; `workers` threads rank
    blocks concurrently.
    """
    num_rows = source.shape[0]
    itemsize = np.dtype(source.dtype).itemsize
    per_pass = max(block_size, (memory_budget // max(1, num_rows * itemsize))
                   // block_size * block_size)
    columns = np.asarray(columns)

    def rank(data, offset, block_columns):
        raw = data[offset:offset + len(block_columns)]
        return block_columns, _top_k_rows(_block_keys(raw, block_columns, refiner), k)

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for pass_start in range(0, len(columns), per_pass):
            pass_columns = columns[pass_start:pass_start + per_pass]
            data = source.columns_transposed(pass_columns)
            pending = collections.deque()
            for offset in range(0, len(pass_columns), block_size):
                pending.append(pool.submit(
                    rank, data, offset, pass_columns[offset:offset + block_size]))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
            del data


def _check_scores(scores, k):
    if len(scores.shape) != 2:
        raise ValueError(f"scores must be [segments, classes], got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(k, scores.shape[0])


def _columns_source(scores):
    return scores if hasattr(scores, "columns_transposed") else DenseColumns(scores)


def top_k_per_class(scores, k, block_size=DEFAULT_BLOCK_SIZE, refiner=None):
    """Row indices [C, min(k, N)] of each class's best segments, best first.

    Ties go to the lower row index. `scores` [N, C] may be a float16 memmap
    or a cache.NpyReader; memory stays O(block_size * N) beyond the result
    (and one pass's columns for a reader). `refiner` (refine.Refiner)
    refines each block first.
    """
    k = _check_scores(scores, k)
    num_classes = scores.shape[1]
    result = np.empty((num_classes, k), dtype=np.int64)
    for block_columns, rows in _top_k_blocks(
            _columns_source(scores), k, np.arange(num_classes), block_size,
            refiner):
        result[block_columns] = rows
    return result


class SegmentIdBytes:
    """Each segment id's UTF-8 bytes after a space, in one [N, W] uint8 table
    padded with 0xFF (never a UTF-8 byte): a class's CSV line is then one
    gather of its rows and one compress, no Python string per segment.
    W is a multiple of 16, which numpy gathers as 16-byte items (~5x faster
    than odd widths)."""

    PAD = 0xFF

    def __init__(self, segment_ids):
        ids = np.asarray(segment_ids)
        if ids.dtype.kind != "U":
            ids = ids.astype(str)
        try:
            encoded = ids.astype("S")  # ASCII, the usual case: a C cast
        except UnicodeEncodeError:
            encoded = np.char.encode(ids, "utf-8")
        lengths = np.char.str_len(encoded) + 1
        width = max(16, -(-(encoded.dtype.itemsize + 1) // 16) * 16)
        table = np.full((len(ids), width), self.PAD, dtype=np.uint8)
        table[:, 0] = ord(" ")
        table[:, 1:encoded.dtype.itemsize + 1] = encoded.view(np.uint8).reshape(
            len(ids), encoded.dtype.itemsize)
        # Bytes past an id's length are padding (a NUL inside an id is kept).
        table[np.arange(width) >= lengths[:, None]] = self.PAD
        self.items = table.view(np.dtype((np.void, width))).ravel()

    def line(self, prefix, rows):
        """`<prefix><id> <id> ...\\n` of segment rows `rows`, as bytes."""
        items = self.items[rows].view(np.uint8)
        body = items[items != self.PAD]
        return b"".join((prefix.encode(), body[1:].tobytes(), b"\n"))


def write_submission(path, segment_ids, scores, class_ids, k,
                     block_size=DEFAULT_BLOCK_SIZE, refiner=None,
                     memory_budget=DEFAULT_MEMORY_BUDGET,
                     workers=DEFAULT_WORKERS):
    """Writes the submission CSV, classes ascending, at most k segments each.

    Streams block by block, so the [C, k] index matrix is never held whole.
    `scores` is [N, C]: an array, a memmap or a cache.NpyReader.
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
    id_bytes = SegmentIdBytes(segment_ids)
    with atomic_open(path, "wb") as handle:
        handle.write(f"{SUBMISSION_HEADER}\n".encode())
        for block_columns, rows in _top_k_blocks(
                _columns_source(scores), k, order, block_size, refiner,
                memory_budget, workers):
            handle.write(b"".join(id_bytes.line(f"{class_ids[c]},", r)
                                  for c, r in zip(block_columns, rows)))


def write_submission_from_cache(path, cache, k, refine_options=None,
                                block_size=DEFAULT_BLOCK_SIZE,
                                memory_budget=DEFAULT_MEMORY_BUDGET,
                                workers=DEFAULT_WORKERS):
    """The submission CSV of an opened cache.ProbabilityCache, refined by
    `refine_options` (refine.RefineOptions; None = no refinement).

    Reads the cache file in column passes (never whole, never memory-mapped)
    and refines block by block. Returns the number of classes written.
    """
    from yt8m_segments.postprocess import refine  # refine imports tensorflow ops only
    refiner = (refine.refiner_for_cache(cache, refine_options)
               if refine_options is not None else None)
    write_submission(path, cache.segment_ids, cache.segment_reader(),
                     cache.class_ids, k, block_size, refiner, memory_budget,
                     workers)
    return len(cache.class_ids)


def _lines(path):
    """(line number, line without newline) for every line after the header."""
    with files.open_input(path, what="CSV file") as handle:
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
