r"""SIGKILL every long job at random moments; check what it leaves and the rerun.

  python bench/kill_points.py --kills=20 --seed=0 [--jobs=a,b] [--workdir=D]

Why: every writer of the package promises that a killed job leaves each
output whole or absent (atomic renames, a commit marker written last,
resumable parts, checkpoints), and that the same command run again in the
same place ends with what an uninterrupted run gives (README, "Killed
jobs"). This bench generates a tiny world once (data/synthetic.py, tiny
models trained in-process), then for each job of JOBS runs its command once
uninterrupted in a process (the reference, timed), then --kills times: starts
it in a process on an emptied output location, SIGKILLs its process group at
a moment uniform in [0, the reference's wall time) (seeded by --seed; case i
is the same whatever --kills says), and
1. checks that every output the package would read now (`trusted`: the test
   its own reader makes before trusting it) equals the reference's; one
   that passes its reader's test but differs is `half_written`;
2. reruns the same command to completion in the same location (a resume:
   training keeps --start_new_model false) and compares the whole output
   tree with the reference's: its exit status (`resume_error`), contents
   (`resume_differs`), and unfinished files the rerun did not clean
   (`leftover`; those seen right after the kill are reported, not failures,
   when the rerun removes them). TMPDIR points into the location, so the
   system temporary files a killed job strands are seen too.
Every process runs a copy of the package taken at the start
(`freeze_package`), so edits made to the tree meanwhile change nothing.

Comparison is by content, file by file (`digest`): bytes, except where a
file holds a time or a process's identity: `.npz` parts and `.h5` weights by
their arrays (zip and HDF5 headers hold times), `.keras` by its config
(Python id()s renumbered) and weights (its metadata.json holds the save
time), TF checkpoints by their tensors (not the save counter: a rerun of a
finished run saves its last step once more), a SavedModel's variables by
their float tensors (the int [2] ones are dropout's seed-generator states,
drawn anew when export loads the run, unused in serving), a cache's
meta.json and TF's `checkpoint` state without their times. TensorBoard
summaries are left out (event files hold wall times; a killed run leaves its
own, which TensorBoard reads up to its last whole record). Every run of a
job uses the same location, so paths inside outputs compare too. Training is
compared bit for bit: the package resumes deterministically by design
(trainer.py: each epoch's order depends only on the seed and the epoch,
dropout's states are checkpointed), every checkpoint against the
reference's of the same step.
"""

import argparse
import collections
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from yt8m_segments import atomic  # noqa: E402
from yt8m_segments import cli  # noqa: E402
from yt8m_segments import locking  # noqa: E402
from yt8m_segments.data import synthetic  # noqa: E402

FAILURES = ("half_written", "resume_error", "resume_differs", "leftover")
TINY_MODEL = ("--model=DBoF", "--video_level_classifier_model=MoE",
              "--dbof_cluster_size=16", "--dbof_hidden_size=8",
              "--batch_size=8", "--num_classes=100", "--log_every_steps=1000")
# Checkpoints every 2 steps, all kept: each one a killed run leaves has the
# reference's of the same step to be compared with.
CHECKPOINTS = ("--checkpoint_every_steps=2", "--keep_checkpoints=20")
SEGMENT_MAX_PRED = 20
# Names a writer gives what it has not finished: atomic.temporary_name's,
# TF's checkpoint shards, export's hidden version, array_cache's siblings.
_TEMPORARY = re.compile(r"\.tmp-|_temp(/|$)|(^|/)\.tmp-|\.tmp(/|$)|\.old(/|$)")
# Never compared: TensorBoard's event files and the run's own TMPDIR.
_SKIPPED = re.compile(r"(^|/)summaries/|^tmp(/|$)")


# ---------------------------------------------------------------- contents

def _arrays_digest(pairs):
    """sha256 of (name, array) pairs: name, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for name, value in pairs:
        value = np.asarray(value)
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _h5_pairs(handle):
    pairs = []
    handle.visititems(lambda name, item: pairs.append((name, item[()]))
                      if isinstance(item, h5py.Dataset) else None)
    return sorted(pairs, key=lambda pair: pair[0])


# Not compared inside TF checkpoints: how many saves came before (a rerun
# of a finished run saves its last step once more) and the object graph.
_CHECKPOINT_SKIPPED = ("save_counter/", "_CHECKPOINTABLE_OBJECT_GRAPH")


def _checkpoint_digest(prefix, exported):
    """The tensors of a TF checkpoint; in a SavedModel (`exported`) its
    float ones only: the int [2] tensors there are dropout's seed-generator
    states, drawn anew when export loads the run and never used in serving."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    reader = tf.train.load_checkpoint(prefix)
    pairs = []
    for name in sorted(reader.get_variable_to_shape_map()):
        if name.startswith(_CHECKPOINT_SKIPPED):
            continue
        value = np.asarray(reader.get_tensor(name))
        if not exported or value.dtype.kind == "f":
            pairs.append((name, value))
    return _arrays_digest(pairs)


def _keras_config(data):
    """A .keras config.json with its `shared_object_id`s (Python id()s of
    the saving process) numbered in order of appearance."""
    numbers = {}
    return re.sub(rb'"shared_object_id": (\d+)', lambda m: b'"shared_object_id": %d'
                  % numbers.setdefault(m.group(1), len(numbers)), data)


def digest(path):
    """A digest of the file at `path`, the same for two runs that wrote the
    same thing (module docstring)."""
    name = os.path.basename(path)
    if name.endswith(".index"):
        return _checkpoint_digest(path[:-len(".index")],
                                  path.endswith("variables/variables.index"))
    if ".data-" in name or name == "fingerprint.pb":
        return "with the .index"  # the index's digest reads it; a hash of both
    with open(path, "rb") as handle:
        data = handle.read()
    if name.endswith(".npz"):
        with np.load(io.BytesIO(data), allow_pickle=False) as part:
            return _arrays_digest((key, part[key]) for key in sorted(part.files))
    if name.endswith(".h5"):
        with h5py.File(io.BytesIO(data), "r") as handle:
            return _arrays_digest(_h5_pairs(handle))
    if name.endswith(".keras"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
                pairs = _h5_pairs(weights)
            config = _keras_config(archive.read("config.json"))
            # Two parts: `_best_so_far` compares the weights alone.
            return (f"config {hashlib.sha256(config).hexdigest()} "
                    f"weights {_arrays_digest(pairs)}")
    if name == "meta.json":
        meta = json.loads(data)
        meta.pop("created", None)
        data = json.dumps(meta, sort_keys=True).encode()
    elif name == "checkpoint":  # TF's state: paths, then their save times
        data = b"\n".join(line for line in data.splitlines()
                          if b"timestamp" not in line)
    return hashlib.sha256(data).hexdigest()


def files_under(root, directories=False):
    """Relative paths of the files under `root` (and of its directories,
    with a trailing slash), sorted."""
    found = []
    for directory, subdirectories, names in os.walk(root):
        if directories:
            names = names + [name + "/" for name in subdirectories]
        found += [os.path.relpath(os.path.join(directory, n), root)
                  + ("/" if n.endswith("/") else "") for n in names]
    return sorted(found)


def is_temporary(relpath):
    """Whether `relpath` is something a writer has not finished."""
    return bool(_TEMPORARY.search(relpath)) or atomic.is_temporary(relpath)


def snapshot(root):
    """{relative path: digest} of the finished files under `root` (not
    temporaries, locks, summaries or TMPDIR)."""
    if not os.path.isdir(root):
        return {}
    return {rel: _safe_digest(os.path.join(root, rel)) for rel in files_under(root)
            if not (is_temporary(rel) or _SKIPPED.search(rel)
                    or os.path.basename(rel) == locking.LOCK_FILE)}


def _safe_digest(path):
    """`digest`, or what stopped it reading the file (a torn one)."""
    try:
        return digest(path)
    except Exception as error:  # noqa: BLE001 - any reader's refusal
        return f"unreadable: {type(error).__name__}"


def temporaries(root):
    """What the package's writers left unfinished under `root`, locks too:
    the outermost unfinished file or directory of each (an empty one too)."""
    found = [rel for rel in files_under(root, directories=True)
             if not rel.startswith("tmp/") and (is_temporary(rel.rstrip("/"))
                                                or os.path.basename(rel) == locking.LOCK_FILE)]
    return [rel for rel in found if not any(
        rel != other and rel.startswith(other) for other in found)]


def strays(root):
    """What was left in the run's TMPDIR (`root`/tmp): TensorFlow's autograph
    sources, the package's scratch directories. A killed process cannot
    clean them and no rerun knows their names; the system's temporary
    directory is the operating system's to clean, so they are reported,
    not failures."""
    return files_under(os.path.join(root, "tmp"))


def differences(found, expected, prefix=""):
    """Paths under `prefix` whose digest differs, or that only one side has."""
    keys = {k for k in [*found, *expected] if k.startswith(prefix)}
    return sorted(k for k in keys if found.get(k) != expected.get(k))


# ---------------------------------------------------------------- outputs

@dataclasses.dataclass
class Output:
    """One output of a job: `path` under the job's location, compared with
    `reference` (default: the same path) under the reference run's, and
    the test its package reader makes before trusting it (`kind`, see
    `trusted`)."""
    kind: str
    path: str
    reference: str = None

    def __post_init__(self):
        self.reference = self.reference or self.path


def trusted(kind, path):
    """The files of the output at `path` that its reader would trust now,
    relative to `path`, each with the relative path of the reference file
    it must equal:
    csv: the file, once it exists (eval and users read any CSV there);
    cache: every file but parts/, once ProbabilityCache.open accepts it;
    parts: inference's finished `parts/*.npz`, and array_cache's parts
      (`parts/N/` with its sizes.json): a rerun skips them, so each must be
      whole;
    array_cache: every file, once manifest.json is there (read_manifest);
    train_dir: model.keras and run_config.json once both are there
      (run_artifacts.Run), the same in best/ (`_best_so_far`), the files
      of each checkpoint
      TF's state file names, and each ckpt-N.weights.h5 (what swa reads);
    stacker: model.txt and stacker.json once both are there (stacker.load);
    export: every file of an integer version directory (TF Serving loads
      any), each to equal the reference's version 1."""
    if kind == "csv":
        return {"": ""} if os.path.isfile(path) else {}
    if not os.path.isdir(path):
        return {}
    files = [rel for rel in files_under(path) if not is_temporary(rel)
             and os.path.basename(rel) != locking.LOCK_FILE]
    chosen = []
    if kind == "cache":
        from yt8m_segments.postprocess import cache  # pylint: disable=import-outside-toplevel
        try:
            cache.ProbabilityCache.open(path)
        except Exception:  # noqa: BLE001 - any refusal is a refusal
            return {}
        chosen = [rel for rel in files if not rel.startswith("parts/")]
    elif kind == "parts":
        chosen = [rel for rel in files if rel.startswith("parts/") and (
            rel.endswith(".npz") or os.path.join(os.path.dirname(rel), "sizes.json")
            in files) and not rel.endswith("sizes.json")]
    elif kind == "array_cache":
        chosen = files if "manifest.json" in files else []
    elif kind == "stacker":
        chosen = [rel for rel in ("model.txt", "stacker.json") if rel in files]
        chosen = chosen if len(chosen) == 2 else []
    elif kind == "export":
        return {rel: "1/" + rel.partition("/")[2] for rel in files
                if rel.split("/")[0].isdigit()}
    elif kind == "train_dir":
        for run in ("", "best/"):
            pair = [run + "model.keras", run + "run_config.json"]
            chosen += pair if set(pair) <= set(files) else []
        listed = checkpoint_prefixes(path)
        chosen += [rel for rel in files if rel.endswith(".weights.h5") or (
            rel.startswith("checkpoints/ckpt-")
            and os.path.basename(rel).split(".")[0] in listed)]
    return {rel: rel for rel in chosen}


def checkpoint_prefixes(train_dir):
    """The checkpoints (`ckpt-N`) TF's state file in `train_dir` lists."""
    state = os.path.join(train_dir, "checkpoints", "checkpoint")
    if not os.path.exists(state):
        return set()
    with open(state) as handle:
        return {os.path.basename(p) for p in re.findall(r'"([^"]+)"', handle.read())}


def half_written(output, root, found, expected):
    """Files of `output` under `root` that its reader would trust but that
    differ from the reference's (`found`, `expected`: the two locations'
    snapshots)."""
    def key(base, rel):
        return os.path.join(base, rel) if rel else base
    bad = []
    for rel, ref in trusted(output.kind, os.path.join(root, output.path)).items():
        # A resumable build's finished parts sit in its `<cache>.tmp/`,
        # which `snapshot` leaves out as unfinished: digest them here.
        value = found.get(key(output.path, rel)) or _safe_digest(
            os.path.join(root, output.path, rel))
        if value != expected.get(key(output.reference, ref)) and not (
                rel.startswith("best/") and _best_so_far(
                    value, key(output.reference, ref), expected)):
            bad.append(key(output.path, rel))
    return sorted(bad)


def _best_so_far(value, reference, expected):
    """Whether `value`, the digest of a killed run's best/model.keras, is
    the best model so far: best/ is rewritten whenever validation improves,
    so a killed run's may rightly be an earlier step's than the finished
    run's. Its config must be the reference's best/, its weights those of
    one of the reference's checkpoints (the job validates at each of its
    checkpoints, without EMA); best/run_config.json must be equal."""
    if not (value and reference.endswith(".keras") and reference in expected):
        return False
    config, _, weights = value.partition(" weights ")
    directory = os.path.join(os.path.dirname(os.path.dirname(reference)),
                             "checkpoints") + "/"
    return config == expected[reference].partition(" weights ")[0] and any(
        name.startswith(directory) and name.endswith(".weights.h5") and digest == weights
        for name, digest in expected.items())


def resume_differences(outputs, found, expected):
    """Paths of the resumed location whose content is not the reference's:
    every file, where each export version must be the reference's 1/."""
    found, expected, bad = dict(found), dict(expected), []
    for output in outputs:
        if output.kind != "export":
            continue
        prefix = output.path + "/"
        reference = {k[len(prefix) + 2:]: expected.pop(k) for k in list(expected)
                     if k.startswith(prefix)}
        versions = collections.defaultdict(dict)
        for k in [k for k in found if k.startswith(prefix)]:
            version, _, rel = k[len(prefix):].partition("/")
            versions[version][rel] = found.pop(k)
        bad += [prefix + v for v, files in sorted(versions.items())
                if files != reference]
        bad += [] if versions else [prefix]
    return bad + sorted(k for k in {*found, *expected}
                        if found.get(k) != expected.get(k))


# ---------------------------------------------------------------- the world

@dataclasses.dataclass
class World:
    """The inputs the jobs read, made once: data, trained runs, caches."""
    root: str

    def __getattr__(self, name):
        return os.path.join(self.__dict__["root"], name)


def _command(name, *args):
    """Command `name` in this process, output captured; its stderr on failure."""
    with cli.captured_output() as (_, stderr):
        try:
            cli.run_in_process(f"yt8m_segments.{name}", list(args))
        except SystemExit as done:
            if done.code:
                raise RuntimeError(f"{name} {' '.join(args)}: "
                                   f"{stderr.getvalue()[-2000:]}") from None


def build_world(root):
    """Two files per split (two parts, two shards), a pretrained run with
    checkpoints (for swa), two fine-tuned runs (for ensembles and the
    stacker), their caches of the test and validate files, and two shard
    caches (for --merge_caches)."""
    world = World(root)
    synthetic.generate(world.data, 32, 16, 8, seed=0, num_classes=100,
                       num_active_classes=6, num_segment_classes=3,
                       min_frames=10, max_frames=25, num_files_per_split=2)
    _command("train", *pretrain_args(world, world.pretrain))
    for name, seed in (("finetune_a", 0), ("finetune_b", 1)):
        _command("train", *finetune_args(world, os.path.join(root, name)),
                 f"--seed={seed}")
    for split in ("test", "validate"):
        for name in ("a", "b"):
            _command("inference", f"--train_dir={root}/finetune_{name}",
                     f"--video_train_dir={world.pretrain}",
                     f"--input_data_pattern={world.data}/{split}-*",
                     f"--cache_dir={root}/{split}_cache_{name}")
    for shard in (0, 1):
        _command("inference", f"--train_dir={world.finetune_a}",
                 f"--input_data_pattern={world.data}/test-*", "--num_shards=2",
                 f"--shard_index={shard}", f"--cache_dir={root}/shard_{shard}")
    return world


def pretrain_args(world, train_dir):
    return ["--stage=pretrain", *TINY_MODEL, *CHECKPOINTS, "--num_epochs=2",
            f"--train_data_pattern={world.data}/train-*", f"--train_dir={train_dir}"]


def finetune_args(world, train_dir):
    return ["--stage=finetune", *TINY_MODEL, *CHECKPOINTS, "--num_epochs=2",
            f"--train_data_pattern={world.data}/validate-*",
            f"--pretrain_dir={world.pretrain}", f"--train_dir={train_dir}"]


# ---------------------------------------------------------------- the jobs

@dataclasses.dataclass
class Job:
    """A command (`module` of yt8m_segments) whose `args(world, out)` write
    `outputs` under `out`; `comparison` says how a resumed run is held to
    the reference (the table's last column)."""
    name: str
    module: str
    args: object
    outputs: list
    comparison: str


TRAINED = ("weights bit-equal (model.keras, best/, every checkpoint's "
           "tensors, ckpt-N.weights.h5)")
CACHED = "cache bytes (meta.json but its time), parts' arrays"


def _jobs():
    cache = [Output("cache", "cache"), Output("parts", "cache")]
    return [
        Job("pretrain", "train", lambda w, o: pretrain_args(w, f"{o}/run"),
            [Output("train_dir", "run")], TRAINED),
        Job("finetune", "train", lambda w, o: [
            *finetune_args(w, f"{o}/run"), f"--eval_data_pattern={w.data}/validate-*",
            "--eval_every_steps=2", "--segment_max_pred=50"],
            [Output("train_dir", "run")], TRAINED),
        Job("video_cache", "train", lambda w, o: [
            *pretrain_args(w, f"{o}/run"), f"--video_cache_dir={o}/video_cache"],
            [Output("array_cache", "video_cache"),
             Output("parts", "video_cache.tmp", "video_cache"),
             Output("train_dir", "run")], "cache bytes; " + TRAINED),
        Job("segment_cache", "train", lambda w, o: [
            *finetune_args(w, f"{o}/run"), f"--segment_cache_dir={o}/segment_cache"],
            [Output("array_cache", "segment_cache"), Output("train_dir", "run")],
            "cache bytes; " + TRAINED),
        Job("inference", "inference", lambda w, o: [
            f"--train_dir={w.finetune_a}", f"--video_train_dir={w.pretrain}",
            f"--input_data_pattern={w.data}/test-*", f"--cache_dir={o}/cache",
            f"--output_file={o}/submission.csv", f"--segment_max_pred={SEGMENT_MAX_PRED}"],
            [*cache, Output("csv", "submission.csv")], "CSV bytes; " + CACHED),
        Job("merge_caches", "inference", lambda w, o: [
            f"--merge_caches={w.shard_0},{w.shard_1}", f"--cache_dir={o}/cache",
            f"--output_file={o}/submission.csv", f"--segment_max_pred={SEGMENT_MAX_PRED}"],
            [Output("cache", "cache"), Output("csv", "submission.csv")],
            "CSV bytes; " + CACHED),
        Job("submission", "inference", lambda w, o: [
            f"--from_cache={w.test_cache_a}", f"--output_file={o}/submission.csv",
            f"--segment_max_pred={SEGMENT_MAX_PRED}", "--refine=topk", "--refine_topk=5"],
            [Output("csv", "submission.csv")], "CSV bytes"),
        Job("ensemble", "ensemble", lambda w, o: [
            f"--caches={w.test_cache_a},{w.test_cache_b}", "--weights=0.7,0.3",
            f"--output_cache={o}/cache"], [Output("cache", "cache")], CACHED),
        Job("stacker", "stacker", lambda w, o: [
            f"--train_caches={w.validate_cache_a},{w.validate_cache_b}",
            f"--eval_data_pattern={w.data}/validate-*", f"--stacker_dir={o}/stacker",
            "--stacker_trees=30", "--stacker_min_data_in_leaf=5",
            f"--caches={w.test_cache_a},{w.test_cache_b}", f"--output_cache={o}/cache"],
            [Output("stacker", "stacker"), Output("cache", "cache")],
            "LightGBM model bytes (deterministic=True); " + CACHED),
        Job("export", "export", lambda w, o: [
            f"--train_dir={w.finetune_a}", f"--video_train_dir={w.pretrain}",
            f"--export_dir={o}/export"], [Output("export", "export")],
            "every version directory = the reference's 1/, file by file "
            "(variables bytes)"),
        Job("swa", "swa", lambda w, o: [
            f"--train_dir={w.pretrain}", "--start_step=2", "--end_step=8",
            f"--output_dir={o}/swa"], [Output("train_dir", "swa")],
            "weights bit-equal (model.keras), run_config bytes"),
    ]


JOBS = {job.name: job for job in _jobs()}


# ---------------------------------------------------------------- running

@dataclasses.dataclass
class Run:
    """One process of a job: exit code (None: killed), seconds, stderr's tail."""
    code: int | None
    seconds: float
    stderr: str = ""


def start(job, world, out):
    """The job's command in a process of its own group, writing under `out`
    (its temporary files, TMPDIR, too)."""
    os.makedirs(os.path.join(out, "tmp"), exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", f"yt8m_segments.{job.module}", *job.args(world, out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "TMPDIR": os.path.join(out, "tmp"),
             "TF_CPP_MIN_LOG_LEVEL": "2"})


def run_process(job, world, out, kill_after=600.0):
    """Run the job, SIGKILLing its whole process group after `kill_after`
    seconds (as a scheduler's preemption or the OOM killer of a job would);
    code None when the kill ended it, 0 when it had finished by then."""
    begin = time.monotonic()
    process = start(job, world, out)
    try:
        _, stderr = process.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
    return Run(process.returncode if process.returncode >= 0 else None,
               time.monotonic() - begin, stderr.decode(errors="replace")[-3000:])


@dataclasses.dataclass
class Kill:
    """What one kill of a job gave: `failures` [(kind, detail)], the
    temporaries seen after the kill, the TMPDIR strays after the rerun,
    whether the job had ended by then."""
    job: str
    index: int
    delay: float
    failures: list
    temporaries: list
    strays: list
    finished: bool


def last_error(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors or lines or ["(no output)"])[-1][:300]


def kill_once(job, world, out, expected, index, delay):
    """Kill case `index` in `out` (emptied first): kill after `delay`, check
    the outputs, resume, compare with the `expected` snapshot."""
    shutil.rmtree(out, ignore_errors=True)
    killed = run_process(job, world, out, delay)
    failures = []
    if killed.code not in (None, 0):
        failures.append(("resume_error", "killed run failed before the kill: "
                         + last_error(killed.stderr)))
    found = snapshot(out)
    for output in job.outputs:
        failures += [("half_written", path) for path in
                     half_written(output, out, found, expected)]
    left = temporaries(out)
    resumed = run_process(job, world, out)
    if resumed.code != 0:
        failures.append(("resume_error", last_error(resumed.stderr)))
    else:
        failures += [("resume_differs", path) for path in
                     resume_differences(job.outputs, snapshot(out), expected)]
        failures += [("leftover", path) for path in temporaries(out)]
    return Kill(job.name, index, delay, failures, left, strays(out),
                killed.code == 0)


def run_job(job, world, workdir, kills, seed):
    """The reference run, then `kills` kill cases, all in one location
    (outputs and their contents may name it: a stacker's fingerprint, TF's
    checkpoint state); the reference is kept in `reference/`, a failing
    case in `kill<i>/`. Returns (reference seconds, [Kill])."""
    base = os.path.join(workdir, "runs", job.name)
    shutil.rmtree(base, ignore_errors=True)
    out = os.path.join(base, "run")
    reference = run_process(job, world, out)
    if reference.code != 0:
        raise RuntimeError(f"{job.name}: the uninterrupted run failed: "
                           f"{reference.stderr}")
    expected = snapshot(out)
    if temporaries(out):
        raise RuntimeError(f"{job.name}: an uninterrupted run left {temporaries(out)}")
    os.rename(out, os.path.join(base, "reference"))
    results = []
    for index in range(kills):
        # Case i of a job is the same whatever --kills says.
        rng = np.random.default_rng([seed, index, *job.name.encode()])
        delay = float(rng.uniform(0, reference.seconds))
        results.append(kill_once(job, world, out, expected, index, delay))
        if results[-1].failures:
            os.rename(out, os.path.join(base, f"kill{index:03d}"))
    shutil.rmtree(out, ignore_errors=True)
    return reference.seconds, results


# ---------------------------------------------------------------- report

def report(results, seconds, comparisons):
    """The table: job | kills | survived | failures (kinds) | comparison, a
    total, then each failure and the notes (temporaries after kills,
    runs that ended before their kill)."""
    rows = [("job", "kills", "survived", "failures (kinds)", "comparison")]
    for name, kills in results.items():
        kinds = collections.Counter(kind for k in kills for kind, _ in k.failures)
        rows.append((name, str(len(kills)), str(sum(not k.failures for k in kills)),
                     ", ".join(f"{kind} {n}" for kind, n in kinds.items()) or "-",
                     comparisons[name]))
    everything = [k for kills in results.values() for k in kills]
    kinds = collections.Counter(kind for k in everything for kind, _ in k.failures)
    rows.append(("total", str(len(everything)),
                 str(sum(not k.failures for k in everything)),
                 ", ".join(f"{kind} {n}" for kind, n in kinds.items()) or "-", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths))
             + " | " + row[4] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", "reference wall time (s): " + ", ".join(
        f"{name} {s:.1f}" for name, s in seconds.items())]
    lines += failure_lines(everything)
    for name, kills in results.items():
        seen = collections.Counter(re.sub(r"(tmp-|ckpt-)\d+(-[0-9a-f]+)?", r"\1N", rel)
                                   for k in kills for rel in k.temporaries)
        ended = sum(k.finished for k in kills)
        stray = collections.Counter(_stray_kind(rel) for k in kills for rel in k.strays)
        lines.append(
            f"note {name}: {ended} run(s) ended before their kill; temporaries "
            "after kills (cleaned by the rerun): "
            + (", ".join(f"{rel} x{n}" for rel, n in seen.items()) or "none")
            + "; left in TMPDIR: "
            + (", ".join(f"{rel} x{n}" for rel, n in stray.items()) or "none"))
    return "\n".join(lines)


def failure_lines(kills):
    return [f"FAILURE {k.job} kill {k.index} at {k.delay:.2f} s: {kind}: {detail}"
            for k in kills for kind, detail in k.failures]


def _stray_kind(rel):
    """A TMPDIR file's name with its random part left out."""
    return re.sub(r"(__autograph_generated_file|yt8m_\w+?_|tmp)\w+", r"\1*", rel)


def freeze_package(workdir):
    """Run every job on a copy of the package as it is now (PYTHONPATH, ahead
    of the installed one): a tree others edit while the bench runs would
    otherwise change the code between a job's reference and its kills (an
    edit of layers/batch_norm.py mid-job made every later run of a training
    job differ from its reference)."""
    import yt8m_segments  # pylint: disable=import-outside-toplevel
    package = os.path.join(workdir, "package")
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(os.path.dirname(yt8m_segments.__file__),
                    os.path.join(package, "yt8m_segments"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [package, *filter(None, [os.environ.get("PYTHONPATH")])])
    # `python -m` would put the working directory first, which from a
    # checkout is the live package (the first full run's segment_cache row).
    os.environ["PYTHONSAFEPATH"] = "1"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default=",".join(JOBS),
                        help=f"Comma-separated jobs among {', '.join(JOBS)}.")
    parser.add_argument("--kills", type=int, default=20,
                        help="Kills per job (each followed by a resume).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the kill moments (the world's is 0).")
    parser.add_argument("--workdir", "--work_dir", default=None,
                        help="Keep the world and the failing cases here "
                             "(default: a temporary directory, removed).")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.jobs.split(",") if name.strip()]
    unknown = sorted(set(names) - set(JOBS))
    if unknown:
        parser.error(f"unknown jobs {unknown}; choose among {', '.join(JOBS)}")
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="kill_points_"))
    begin = time.monotonic()
    results, seconds = {}, {}
    try:
        freeze_package(workdir)
        world_dir = os.path.join(workdir, "world")
        if os.path.exists(os.path.join(world_dir, "done")):
            world = World(world_dir)  # a kept --workdir's
        else:
            shutil.rmtree(world_dir, ignore_errors=True)
            world = build_world(world_dir)
            open(os.path.join(world_dir, "done"), "w").close()
        for name in names:
            seconds[name], results[name] = run_job(JOBS[name], world, workdir,
                                                   args.kills, args.seed)
            print(f"{name}: {sum(not k.failures for k in results[name])} of "
                  f"{len(results[name])} kills survived", *failure_lines(results[name]),
                  sep="\n", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(results, seconds, {n: JOBS[n].comparison for n in names}))
    failures = sum(bool(k.failures) for kills in results.values() for k in kills)
    print(f"\n{len(names)} jobs, {args.kills} kills each, seed {args.seed}, "
          f"{time.monotonic() - begin:.0f} s; kills with a failure: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
