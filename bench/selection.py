r"""Refinement + per-class top-K selection + CSV at the real test set's size.

  python bench/selection.py [--scale=1.0] [--keep] [--workdir=DIR] [--cold]

Generates (streaming, never whole in memory) a probability cache shaped like
the real test set (docs/metric.md): 2,062,258 segments x 1000 segment classes
fp16 (4.1 GB) in 89,506 videos (~23 segments each), plus 89,506 x 3862 fp16
video probabilities (0.7 GB). Scores have structure: each video has 1-4
entity classes (Zipf over the vocabulary) with high video probabilities and
high scores on some of its segments; everything else is low noise.

Then, each in a fresh child process (so ru_maxrss is that stage's own peak):
  read       one plain sequential read of segment_probs.npy (64K-row blocks)
  selection  refine (--refine=topk, 20) + per-class top-K + the CSV, the
             project's path (submission.write_submission_from_cache: one
             row-major pass keeping each class's pairs above a sampled
             threshold, then ranking and byte-table formatting per class)
  heap       the starter code's method: each segment's top-20 classes pushed
             into 1000 Python heaps of size K, on the first --heap_fraction
             of the segments, extrapolated linearly to all of them (the
             starter's text round trip of the top-20 lists is not included,
             which flatters it)

Peak memory is the child's own high-water resident set (VmHWM; ru_maxrss
would start at the parent's, which holds ~1.2 GB after generating): file-backed
pages included if memory-mapped (the project reads the cache with plain file
reads, so cached file pages stay in the kernel's page cache and do not count).
Without --cold the cache files are usually still in the page cache after
generation (24 GB machine); --cold drops them first (posix_fadvise DONTNEED).
K defaults to round(100000 * N / 2062258) (docs/metric.md).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REAL_SEGMENTS = 2_062_258
REAL_VIDEOS = 89_506
NUM_CLASSES = 1000
VOCABULARY = 3862
ALPHABET = np.array(list("0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _peak_gb():
    """This process's peak RSS. VmHWM is of its own address space; ru_maxrss
    of an exec'd child starts at its parent's peak."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _drop_page_cache(directory):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


# ---------------------------------------------------------------- generate

def generate(cache_dir, scale, seed=0):
    from yt8m_segments.postprocess import cache
    rng = np.random.default_rng(seed)
    num_segments = round(REAL_SEGMENTS * scale)
    num_videos = max(1, round(REAL_VIDEOS * scale))
    counts = rng.poisson(REAL_SEGMENTS / REAL_VIDEOS - 1, num_videos) + 1
    diff = num_segments - counts.sum()
    while diff:
        pick = rng.integers(0, num_videos, abs(diff))
        np.add.at(counts, pick, np.sign(diff))
        counts = np.maximum(counts, 1)
        diff = num_segments - counts.sum()
    codes = rng.choice(62**4, num_videos, replace=False)
    video_ids = ["".join(ALPHABET[(codes[i] // 62**p) % 62] for p in range(4))
                 for i in range(num_videos)]
    class_ids = rng.choice(np.arange(3, 1832), NUM_CLASSES, replace=False)
    segment_position = np.full(VOCABULARY, -1)
    segment_position[class_ids] = np.arange(NUM_CLASSES)
    zipf = 1.0 / (np.arange(VOCABULARY) + 2.0)
    zipf /= zipf.sum()
    first = np.concatenate([[0], np.cumsum(counts)])
    chunk = 4096
    with cache.CacheWriter(cache_dir, num_segments, class_ids, num_videos,
                           list(range(VOCABULARY))) as writer:
        for v0 in range(0, num_videos, chunk):
            v1 = min(v0 + chunk, num_videos)
            nv = v1 - v0
            entities = rng.choice(VOCABULARY, (nv, 4), p=zipf)
            has = rng.random((nv, 4)) < np.array([1.0, 0.7, 0.35, 0.1])
            video = (rng.random((nv, VOCABULARY), dtype=np.float32) ** 8) * 0.02
            rows = np.repeat(np.arange(nv), 4)[has.ravel()]
            video[rows, entities.ravel()[has.ravel()]] = rng.uniform(
                0.3, 0.99, rows.size)
            writer.write_videos(video_ids[v0:v1], video.astype(np.float16))
            s0, s1 = first[v0], first[v1]
            seg_video = np.repeat(np.arange(nv), counts[v0:v1])
            seg = (rng.random((s1 - s0, NUM_CLASSES), dtype=np.float32) ** 6) * 0.1
            entity_pos = segment_position[entities]
            for e in range(4):
                ok = has[:, e] & (entity_pos[:, e] >= 0)
                sel = ok[seg_video]
                lit = rng.random(sel.sum()) < 0.4
                seg[np.flatnonzero(sel), entity_pos[seg_video[sel], e]] = np.where(
                    lit, rng.uniform(0.5, 1.0, sel.sum()),
                    rng.uniform(0.05, 0.4, sel.sum()))
            ids = [f"{video_ids[v0 + v]}:{5 * i}" for v in range(nv)
                   for i in range(counts[v0 + v])]
            writer.write_segments(ids, seg.astype(np.float16))
        writer.commit({"fingerprint": "bench", "video_fingerprint": "bench",
                       "generator": f"bench/selection.py scale={scale} seed={seed}"})


# ---------------------------------------------------------------- stages

def stage_read(cache_dir, args):
    from yt8m_segments.postprocess import cache
    reader = cache.NpyReader(os.path.join(cache_dir, cache.SEGMENT_PROBS))
    start, cpu = time.perf_counter(), time.process_time()
    total = 0.0
    for _, rows in reader.row_blocks():
        total += float(rows[:, 0].astype(np.float32).sum())  # touch the data
    return {"seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
            "bytes": os.path.getsize(reader.path)}


def stage_selection(cache_dir, args):
    from yt8m_segments.postprocess import cache, refine, submission
    timings = {}
    start, cpu = time.perf_counter(), time.process_time()
    opened = cache.ProbabilityCache.open(cache_dir)
    timings["open (ids)"] = time.perf_counter() - start
    options = refine.RefineOptions(mode=args.refine)
    t = time.perf_counter()
    refiner = refine.refiner_for_cache(opened, options)
    timings["refiner (video top_k)"] = time.perf_counter() - t
    t = time.perf_counter()
    output = os.path.join(args.workdir, "submission.csv")
    submission.write_submission(
        output, opened.segment_ids, opened.segment_reader(), opened.class_ids,
        args.k, refiner=refiner, memory_budget=int(args.memory_budget_gb * 2**30),
        workers=args.workers)
    timings["refine + select + CSV"] = time.perf_counter() - t
    size = os.path.getsize(output)
    os.remove(output)
    return {"seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu, "parts": timings,
            "csv_bytes": size}


def stage_heap(cache_dir, args):
    """The starter code's method on the first `heap_fraction` of segments."""
    import heapq
    from yt8m_segments.postprocess import cache
    reader = cache.NpyReader(os.path.join(cache_dir, cache.SEGMENT_PROBS))
    with open(os.path.join(cache_dir, cache.CLASS_IDS)) as handle:
        class_ids = json.load(handle)
    num_rows = max(1, round(reader.shape[0] * args.heap_fraction))
    with open(os.path.join(cache_dir, cache.SEGMENT_IDS)) as handle:
        segment_ids = [next(handle).rstrip("\n") for _ in range(num_rows)]
    start, cpu = time.perf_counter(), time.process_time()
    heaps = [[] for _ in class_ids]
    k = args.k
    top = 20
    with open(reader.path, "rb") as handle:
        for r0 in range(0, num_rows, 8192):
            r1 = min(r0 + 8192, num_rows)
            rows = reader.rows(r0, r1, handle).astype(np.float32)
            best = np.argpartition(-rows, top, axis=1)[:, :top]
            scores = np.take_along_axis(rows, best, axis=1)
            for i, (classes, values) in enumerate(zip(best.tolist(), scores.tolist())):
                segment = segment_ids[r0 + i]
                for c, value in zip(classes, values):
                    heap = heaps[c]
                    if len(heap) < k:
                        heapq.heappush(heap, (value, segment))
                    elif value > heap[0][0]:
                        heapq.heappushpop(heap, (value, segment))
    lines = []
    for c in np.argsort(class_ids):
        ranked = sorted(heaps[c], reverse=True)
        lines.append(f"{class_ids[c]}," + " ".join(s for _, s in ranked))
    seconds = time.perf_counter() - start
    scale = reader.shape[0] / num_rows
    return {"seconds": seconds, "fraction": num_rows / reader.shape[0],
            "extrapolated_seconds": seconds * scale,
            "cpu_seconds": (time.process_time() - cpu) * scale}


STAGES = {"read": stage_read, "selection": stage_selection, "heap": stage_heap}


def run_child(stage, args):
    command = [sys.executable, os.path.abspath(__file__), f"--child={stage}",
               f"--workdir={args.workdir}", f"--k={args.k}",
               f"--heap_fraction={args.heap_fraction}", f"--refine={args.refine}",
               f"--memory_budget_gb={args.memory_budget_gb}",
               f"--workers={args.workers}"]
    if args.cold:
        _drop_page_cache(os.path.join(args.workdir, "cache"))
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a cache already generated in --workdir")
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument("--heap_fraction", type=float, default=0.02)
    parser.add_argument("--refine", default="topk")
    parser.add_argument("--memory_budget_gb", type=float, default=2.0,
                        help="candidates held by selection's fallback passes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", default="read,selection,heap")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.child:
        result = STAGES[args.child](os.path.join(args.workdir, "cache"), args)
        result["peak_rss_gb"] = _peak_gb()
        print(json.dumps(result))
        return
    num_segments = round(REAL_SEGMENTS * args.scale)
    if args.k is None:
        args.k = max(1, round(100000 * num_segments / REAL_SEGMENTS))
    own_dir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="bench_selection_")
    os.makedirs(args.workdir, exist_ok=True)
    need = args.scale * (4.13 + 0.69 + 1.3) * 1e9 * 1.1
    free = shutil.disk_usage(args.workdir).free
    print(f"workdir {args.workdir}: {free / 1e9:.1f} GB free, need ~{need / 1e9:.1f} GB")
    if free < need:
        sys.exit(f"not enough disk space in {args.workdir}; lower --scale")
    cache_dir = os.path.join(args.workdir, "cache")
    try:
        if not (args.reuse and os.path.exists(os.path.join(cache_dir, "meta.json"))):
            start = time.perf_counter()
            generate(cache_dir, args.scale)
            print(f"generated {num_segments:,} x {NUM_CLASSES} cache in "
                  f"{time.perf_counter() - start:.0f} s")
        results = {}
        for stage in args.stages.split(","):
            results[stage] = run_child(stage, args)
            print(stage, json.dumps(results[stage]), flush=True)
        print_table(results, args, num_segments)
    finally:
        if not args.keep:
            shutil.rmtree(cache_dir, ignore_errors=True)
            if own_dir:
                shutil.rmtree(args.workdir, ignore_errors=True)


def print_table(results, args, num_segments):
    """Wall seconds beside CPU seconds: on a shared machine the CPU time is
    the work, the wall time also what other processes took (load average)."""
    print()
    print(f"scale {args.scale}: {num_segments:,} segments x {NUM_CLASSES} classes, "
          f"K={args.k}, refine={args.refine}, {args.workers} workers, "
          f"page cache {'dropped (--cold)' if args.cold else 'warm'}, "
          f"load average {os.getloadavg()[1]:.1f} (5 min)")
    base = results.get("selection", {}).get("seconds")
    rows = []
    if "read" in results:
        r = results["read"]
        rows.append(("plain sequential read of the cache", r["seconds"], r["seconds"],
                     r["cpu_seconds"], r["peak_rss_gb"]))
    if "selection" in results:
        r = results["selection"]
        rows.append((f"refine({args.refine}) + select + CSV (this project)",
                     r["seconds"], r["seconds"], r["cpu_seconds"], r["peak_rss_gb"]))
        for name, seconds in r["parts"].items():
            rows.append((f"  of which {name}", seconds, seconds, None, None))
    if "heap" in results:
        r = results["heap"]
        rows.append((f"starter heaps, top-20/segment ({r['fraction']:.1%} measured)",
                     r["seconds"], r["extrapolated_seconds"], r["cpu_seconds"],
                     r["peak_rss_gb"]))
    print(f"{'method':<58} {'measured s':>10} {'all rows s':>10} "
          f"{'x selection':>11} {'cpu s':>7} {'peak RSS GB':>11}")
    for name, measured, full, cpu, peak in rows:
        ratio = f"{full / base:.2f}" if base else "-"
        cpu_text = f"{cpu:.1f}" if cpu is not None else ""
        peak_text = f"{peak:.2f}" if peak is not None else ""
        print(f"{name:<58} {measured:>10.1f} {full:>10.1f} {ratio:>11} "
              f"{cpu_text:>7} {peak_text:>11}")


if __name__ == "__main__":
    main()
