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

# Scores per chunk of the row-major pass (~16 MB of float16): its temporaries
# stay under glibc's 32 MB mmap threshold, so they reuse heap pages instead of
# faulting fresh ones in for every chunk.
CHUNK_SCORES = 8 << 20
# Scores compared at a time within a chunk (2 MB of float16 + 1 MB of mask).
L2_SCORES = 1 << 20
# Rows sampled, in runs of SAMPLE_RUN evenly spread (few reads, thousands of
# videos), to set each class's first candidate threshold.
SAMPLE_ROWS = 16384
SAMPLE_RUN = 16
# Candidates held by the fallback passes (classes the sample misjudged).
DEFAULT_MEMORY_BUDGET = 2 << 30
DEFAULT_WORKERS = 2
# Classes per ranking (and formatting) task.
CLASSES_PER_TASK = 8


# float16 -> float32 through a 65,536-entry table: numpy's own conversion
# takes ~14 ns per subnormal value (small probabilities are subnormal in fp16).
F16_TO_F32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def float16_to_float32(values):
    """Exact float16 -> float32 of an array, via the lookup table."""
    values = np.asarray(values)
    return F16_TO_F32[values.view(np.uint16)]


_INF_BITS = {np.dtype(np.int16): 0x7C00, np.dtype(np.int32): 0x7F800000}


def _float_bits(values):
    """The bits, as signed ints, of float16 values, or of float32 of others."""
    values = np.asarray(values)
    if values.dtype != np.float16:
        values = np.asarray(values, dtype=np.float32)
    return values.view(np.int16 if values.dtype == np.float16 else np.int32)


def _magnitudes(bits):
    """Float bits without their sign bit; raises on NaN."""
    magnitudes = bits & bits.dtype.type(np.iinfo(bits.dtype).max)
    if magnitudes.size and magnitudes.max() > _INF_BITS[bits.dtype]:
        raise ValueError("scores contain NaN; cannot rank them")
    return magnitudes


def _check_no_nan(bits):
    """_magnitudes' NaN check, by two reductions and no copy where no score
    is negative (probabilities)."""
    if bits.size and (bits.max() > _INF_BITS[bits.dtype] or bits.min() < 0):
        _magnitudes(bits)


def _keys_of_bits(bits):
    """Sign-magnitude float bits -> two's complement: the signed key."""
    sign = bits >> (8 * bits.itemsize - 1)  # 0, or -1 for a negative
    keys = _magnitudes(bits)
    keys ^= sign
    keys -= sign
    return keys


def signed_keys(values):
    """Signed integer keys ordered exactly as the float `values`: float16 ->
    int16, anything else -> float32 -> int32; -0 equals +0. Integer ops on
    the bits, so ranking is exact and never converts float16 to float.
    Raises on NaN. dropped_key is below every key."""
    return _keys_of_bits(_float_bits(values))


def dropped_key(dtype):
    """The key of a pair refinement drops: below every score's key."""
    return np.iinfo(dtype).min


def order_keys(values):
    """Unsigned integer keys ordered exactly as the float `values` (float16 ->
    uint16, else float32 -> uint32); -0 equals +0, 0 is below every score.
    Raises on NaN."""
    keys = signed_keys(values)
    return (keys ^ keys.dtype.type(dropped_key(keys.dtype))).view(f"u{keys.itemsize}")


def _read_rows(scores, start, stop):
    """Rows start:stop of [N, C] scores: an array, a memmap, or a
    cache.NpyReader (plain file reads, a handle per call: threads share none)."""
    if hasattr(scores, "rows"):
        return scores.rows(start, stop)
    return np.asarray(scores[start:stop])


def _refined_bits(raw, segment_rows, refiner):
    """Float bits (signed ints) of a [rows, C] block at `segment_rows` (a
    slice or index array), fused if the refinement (refine.Refiner) fuses."""
    if refiner is not None and refiner.fuses:
        raw = refiner.fused(raw, segment_rows)
    return _float_bits(raw)


def _sample_runs(num_rows):
    """(start, stop) row runs of the threshold sample: all rows, or
    SAMPLE_ROWS of them in evenly spread runs of SAMPLE_RUN."""
    if num_rows <= SAMPLE_ROWS:
        return [(0, num_rows)]
    run = min(SAMPLE_RUN, SAMPLE_ROWS)
    starts = np.linspace(0, num_rows - run, max(2, SAMPLE_ROWS // run)).astype(int)
    return [(start, start + run) for start in starts.tolist()]


def _first_thresholds(scores, k, refiner):
    """Each class's first candidate threshold: a key that its k-th best pair
    clears with a wide margin in a sample of rows (then ~1.2 k candidates per
    class, not N), or the floor (every kept pair) where the sample holds too
    few kept pairs for that."""
    runs = _sample_runs(scores.shape[0])
    raw = np.concatenate([_read_rows(scores, start, stop) for start, stop in runs])
    rows = np.concatenate([np.arange(start, stop) for start, stop in runs])
    keys = _keys_of_bits(_refined_bits(raw, rows, refiner))
    dropped = None if refiner is None else refiner.dropped(rows)
    if dropped is not None:
        np.copyto(keys, dropped_key(keys.dtype), where=dropped)
    floor = dropped_key(keys.dtype) + 1
    expected = k * len(keys) / max(1, scores.shape[0])
    want = int(expected * 1.05 + 4 * np.sqrt(expected)) + 2
    if want > len(keys):
        return np.full(keys.shape[1], floor, dtype=keys.dtype)
    # A sort, not np.partition: that takes ~10x longer on the sample's many
    # equal keys (dropped pairs); int16 keys sort by radix, a class's row at
    # a time (transposed: contiguous).
    kth = np.sort(keys.T, axis=1, kind="stable")[:, len(keys) - want]
    return np.maximum(kth, floor).astype(keys.dtype)


def _bit_thresholds(thresholds):
    """The thresholds on float bits as signed ints, where that is exact: a
    threshold above 0 (a positive float's bits are its key, a negative's are
    below 0) or the floor (every pair passes). None if one is neither."""
    floor = dropped_key(thresholds.dtype) + 1
    at_floor = thresholds == floor
    if not np.all((thresholds > 0) | at_floor):
        return None
    return np.where(at_floor, np.iinfo(thresholds.dtype).min, thresholds).astype(
        thresholds.dtype)


def _candidates(scores, refiner, thresholds, bit_thresholds, start, stop):
    """The pairs of rows start:stop whose key reaches their class's threshold
    and that refinement keeps, grouped by class: (offsets [C + 1], segment
    rows, keys), rows ascending within a class. Compared on the float bits
    where _bit_thresholds allows (keys only for the candidates)."""
    bits = _refined_bits(_read_rows(scores, start, stop), slice(start, stop), refiner)
    num_classes = scores.shape[1]
    flats = []
    step = max(1, L2_SCORES // num_classes)
    for first in range(0, len(bits), step):  # each step's temporaries in L2
        part = bits[first:first + step]
        if bit_thresholds is None:
            reaching = _keys_of_bits(part) >= thresholds
        else:
            _check_no_nan(part)
            reaching = part >= bit_thresholds
        dropped = (None if refiner is None else
                   refiner.dropped(slice(start + first, start + first + len(part))))
        if dropped is not None:
            np.greater(reaching, dropped, out=reaching)  # reaching and kept
        flats.append(np.flatnonzero(reaching) + first * num_classes)
    flat = np.concatenate(flats)
    # Float division floors exactly here (a quotient's fraction stays 1/C or
    # more from the next integer, far above an ulp of the chunk's row count)
    # and is ~5x faster than int64 division.
    rows = (flat / num_classes).astype(np.int32 if scores.shape[0] < 2**31 else np.int64)
    classes = (flat - rows * np.int64(num_classes)).astype(
        np.min_scalar_type(num_classes - 1))
    order = np.argsort(classes, kind="stable")  # a radix sort: <= 16-bit classes
    offsets = np.concatenate([[0], np.cumsum(np.bincount(classes, minlength=num_classes))])
    rows += start
    keys = _keys_of_bits(bits.ravel()[flat])  # in flat order: a streaming gather
    # Offsets as a list: a class's slices of 250 parts are Python-indexed.
    return offsets.tolist(), rows[order], keys[order]


def _pass(scores, refiner, thresholds, chunk_rows, pool):
    """The candidates of one pass over all rows, one part per chunk of rows
    (grouped by class within a chunk: its arrays stay in the L2 cache)."""
    bit_thresholds = _bit_thresholds(thresholds)
    num_rows = scores.shape[0]
    return list(pool.map(
        lambda start: _candidates(scores, refiner, thresholds, bit_thresholds,
                                  start, min(start + chunk_rows, num_rows)),
        range(0, num_rows, chunk_rows)))


def _select(scores, k, refiner, chunk_rows, memory_budget, pool):
    """Per class: the parts holding its candidates, and whether they are all
    its kept pairs (`complete`).

    One pass at the sampled thresholds; a class it leaves short of k (the
    sample misjudged it) gets a pass at the floor, as many such classes per
    pass as `memory_budget` holds at N candidates each. Exact either way.
    """
    thresholds = _first_thresholds(scores, k, refiner)
    floor = dropped_key(thresholds.dtype) + 1
    parts = _pass(scores, refiner, thresholds, chunk_rows, pool)
    counts = sum(np.diff(offsets) for offsets, _, _ in parts)  # [C]
    holders = [parts] * len(thresholds)
    complete = thresholds == floor
    short = np.flatnonzero((counts < k) & ~complete)
    per_pass = max(1, memory_budget // (8 * scores.shape[0]))
    for first in range(0, len(short), per_pass):
        group = short[first:first + per_pass]
        retry = np.full_like(thresholds, np.iinfo(thresholds.dtype).max)
        retry[group] = floor
        group_parts = _pass(scores, refiner, retry, chunk_rows, pool)
        for c in group:
            holders[c] = group_parts
    complete[short] = True
    return holders, complete


def _first_missing(sorted_rows, count):
    """The `count` smallest row indices not in `sorted_rows`."""
    taken = np.zeros(count + len(sorted_rows), dtype=bool)
    taken[sorted_rows[sorted_rows < len(taken)]] = True
    return np.flatnonzero(~taken)[:count]


def _class_top(parts, c, k, complete):
    """Class c's k best rows, best first, ties to the lower row; topped up
    with dropped rows, lowest first, where its kept pairs are fewer than k."""
    rows = np.concatenate([part_rows[offsets[c]:offsets[c + 1]]
                           for offsets, part_rows, _ in parts])
    keys = np.concatenate([part_keys[offsets[c]:offsets[c + 1]]
                           for offsets, _, part_keys in parts])
    top = rows[np.argsort(~keys, kind="stable")[:k]]  # ~ reverses signed keys
    if len(top) < k:
        assert complete, "a class short of k candidates with no fallback pass"
        top = np.concatenate([top, _first_missing(rows, k - len(top))])
    return top


def _check_scores(scores, k):
    if len(scores.shape) != 2:
        raise ValueError(f"scores must be [segments, classes], got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(k, scores.shape[0])


def _top_k_blocks(scores, k, columns, refiner, chunk_rows, memory_budget,
                  workers, finish=None):
    """Yields (columns of a block, [finish(column, its top rows)]) in the
    order of `columns`, ranked (and finished) in `workers` threads.

    `scores` [N, C]: an array, a memmap or a cache.NpyReader, read row-major
    in chunks of `chunk_rows` (default ~8M scores). Each class keeps only
    candidates above a threshold sampled first (_select), so the pass is
    one sequential read and integer compares (float16 bits -> signed_keys).
    """
    finish = finish or (lambda column, top: top)
    chunk_rows = chunk_rows or max(1, CHUNK_SCORES // max(1, scores.shape[1]))
    columns = np.asarray(columns)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        if k:
            holders, complete = _select(scores, k, refiner, chunk_rows,
                                        memory_budget, pool)

        def rank(block):
            return block, [finish(c, _class_top(holders[c], c, k, complete[c])
                                  if k else np.empty(0, dtype=np.int64))
                           for c in block]

        pending = collections.deque()
        for start in range(0, len(columns), CLASSES_PER_TASK):
            pending.append(pool.submit(rank, columns[start:start + CLASSES_PER_TASK]))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def top_k_per_class(scores, k, chunk_rows=None, refiner=None,
                    memory_budget=DEFAULT_MEMORY_BUDGET, workers=DEFAULT_WORKERS):
    """Row indices [C, min(k, N)] of each class's best segments, best first.

    Ties go to the lower row index. `scores` [N, C] may be an array, a
    float16 memmap or a cache.NpyReader; memory stays ~1.2 k candidates per
    class beyond the result. `refiner` (refine.Refiner) refines the scores.
    """
    k = _check_scores(scores, k)
    num_classes = scores.shape[1]
    result = np.empty((num_classes, k), dtype=np.int64)
    for block, rows in _top_k_blocks(scores, k, np.arange(num_classes), refiner,
                                     chunk_rows, memory_budget, workers):
        result[block] = rows
    return result


def write_submission(path, segment_ids, scores, class_ids, k, chunk_rows=None,
                     refiner=None, memory_budget=DEFAULT_MEMORY_BUDGET,
                     workers=DEFAULT_WORKERS):
    """Writes the submission CSV, classes ascending, at most k segments each.

    Ranks and formats classes a block at a time in worker threads, so the
    [C, k] index matrix is never held whole (the candidates are, ~1.2 k per
    class). `scores` is [N, C]: an array, a memmap or a cache.NpyReader.
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
    with concurrent.futures.ThreadPoolExecutor(1) as side, \
            atomic_open(path, "wb") as handle:
        id_bytes = side.submit(SegmentIdBytes, segment_ids)  # during the pass
        handle.write(f"{SUBMISSION_HEADER}\n".encode())
        for _, lines in _top_k_blocks(
                scores, k, np.argsort(class_ids, kind="stable"), refiner,
                chunk_rows, memory_budget, workers,
                lambda c, top: id_bytes.result().line(f"{class_ids[c]},", top)):
            for line in lines:  # ~0.8 MB each: no joined copy of a block
                handle.write(line)


def write_submission_from_cache(path, cache, k, refine_options=None,
                                chunk_rows=None,
                                memory_budget=DEFAULT_MEMORY_BUDGET,
                                workers=DEFAULT_WORKERS):
    """The submission CSV of an opened cache.ProbabilityCache, refined by
    `refine_options` (refine.RefineOptions; None = no refinement).

    Reads the cache file row-major with plain file reads (never whole, never
    memory-mapped). Returns the number of classes written.
    """
    from yt8m_segments.postprocess import refine  # refine imports tensorflow ops only
    refiner = (refine.refiner_for_cache(cache, refine_options)
               if refine_options is not None else None)
    write_submission(path, cache.segment_ids, cache.segment_reader(),
                     cache.class_ids, k, chunk_rows, refiner, memory_budget,
                     workers)
    return len(cache.class_ids)


class SegmentIdBytes:
    """Each segment id's UTF-8 bytes after a space, in one [N, W] uint8 table
    padded with 0xFF (never a UTF-8 byte): a class's CSV line is then one
    gather of its rows and one compress, no Python string per segment.
    W is a multiple of 16, which numpy gathers as 16-byte items (~5x faster
    than odd widths)."""

    PAD = 0xFF

    def __init__(self, segment_ids):
        ids = np.ascontiguousarray(segment_ids)
        if ids.dtype.kind != "U":
            ids = ids.astype(str)
        codes = ids.view(np.uint32).reshape(len(ids), ids.dtype.itemsize // 4)
        if codes.size and codes.max() >= 128:
            encoded = np.char.encode(ids, "utf-8")
            utf8 = encoded.view(np.uint8).reshape(len(ids), encoded.dtype.itemsize)
            lengths = np.char.str_len(encoded)
        else:  # ASCII, the usual case: a code point is its byte (~10x encode)
            utf8, lengths = codes, np.char.str_len(ids)
        width = max(16, -(-(utf8.shape[1] + 1) // 16) * 16)
        table = np.full((len(ids), width), self.PAD, dtype=np.uint8)
        table[:, 0] = ord(" ")
        table[:, 1:utf8.shape[1] + 1] = utf8
        # Bytes past an id's length are padding (a NUL inside an id is kept).
        table[np.arange(width) > lengths[:, None]] = self.PAD
        self.items = table.view(np.dtype((np.void, width))).ravel()

    def line(self, prefix, rows):
        """`<prefix><id> <id> ...\\n` of segment rows `rows`, as bytes."""
        items = self.items[rows].view(np.uint8)
        body = items[items != self.PAD]
        return b"".join((prefix.encode(), memoryview(body)[1:], b"\n"))  # one copy


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
