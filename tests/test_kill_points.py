"""The kill bench (bench/kill_points.py) on a CI-sized slice: its checks on
hand-made partial outputs (what a reader would trust, content digests,
leftovers, the table), then one real job, an ensemble of two small caches,
run, SIGKILLed once and resumed, in processes."""

import json
import os
import sys

import numpy as np
import pytest

from yt8m_segments.postprocess import cache

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "bench"))
import kill_points  # noqa: E402  pylint: disable=wrong-import-position


def write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def write_cache(path, value=0.5, num_segments=6):
    return cache.write_cache(str(path), [f"v{i}:0" for i in range(num_segments)],
                             np.full((num_segments, 2), value), [3, 7],
                             {"fingerprint": "f"})


def test_a_reader_trusts_only_finished_outputs(tmp_path):
    """A torn CSV is trusted (it is there); an uncommitted cache, a run
    without its config and a checkpoint TF's state does not list are not."""
    write(tmp_path / "sub.csv", "Class,Seg")
    assert kill_points.trusted("csv", str(tmp_path / "sub.csv")) == {"": ""}
    assert kill_points.trusted("csv", str(tmp_path / "none.csv")) == {}
    write_cache(tmp_path / "cache")
    assert "segment_probs.npy" in kill_points.trusted("cache", str(tmp_path / "cache"))
    os.remove(tmp_path / "cache" / "meta.json")  # a write that never committed
    assert kill_points.trusted("cache", str(tmp_path / "cache")) == {}
    run = tmp_path / "run"
    write(run / "model.keras")
    write(run / "checkpoints" / "ckpt-2.index")
    write(run / "checkpoints" / "ckpt-4.index")
    write(run / "checkpoints" / "ckpt-4.tmp-9.weights.h5")
    write(run / "checkpoints" / "checkpoint", 'model_checkpoint_path: "ckpt-2"\n'
          'all_model_checkpoint_paths: "ckpt-2"\n')
    assert sorted(kill_points.trusted("train_dir", str(run))) == [
        "checkpoints/ckpt-2.index"]
    write(run / "run_config.json", "{}")
    assert "model.keras" in kill_points.trusted("train_dir", str(run))
    write(tmp_path / "export" / "3" / "saved_model.pb")
    write(tmp_path / "export" / ".tmp-4-ab" / "saved_model.pb")
    assert kill_points.trusted("export", str(tmp_path / "export")) == {
        "3/saved_model.pb": "1/saved_model.pb"}


def test_half_written_outputs_are_the_trusted_ones_that_differ(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for root in (reference, killed):
        write(root / "sub.csv", "Class,Segments\n3,v0:0\n")
        write_cache(root / "cache")
    expected = kill_points.snapshot(str(reference))
    csv, cache_output = kill_points.Output("csv", "sub.csv"), kill_points.Output(
        "cache", "cache")
    found = kill_points.snapshot(str(killed))
    assert found == expected  # meta.json's time is not compared
    assert kill_points.half_written(csv, str(killed), found, expected) == []
    write(killed / "sub.csv", "Class,Segm")
    write_cache(killed / "cache", value=0.25)
    found = kill_points.snapshot(str(killed))
    assert kill_points.half_written(csv, str(killed), found, expected) == ["sub.csv"]
    assert kill_points.half_written(cache_output, str(killed), found, expected) == [
        "cache/segment_probs.npy"]
    assert kill_points.resume_differences([csv, cache_output], found, expected) == [
        "cache/segment_probs.npy", "sub.csv"]



def test_finished_parts_of_an_unfinished_build_are_compared(tmp_path):
    """A resumable build's finished part in `<cache>.tmp/parts/N/` (its
    sizes.json written) is compared with the finished cache's part: equal
    is no failure (the snapshot leaves `.tmp` directories out, which once
    read as half written), different is half written."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    write(reference / "video_cache" / "parts" / "00000" / "frames.bin", "abc")
    write(reference / "video_cache" / "parts" / "00000" / "sizes.json", "{}")
    part = killed / "video_cache.tmp" / "parts" / "00000"
    write(part / "frames.bin", "abc")
    write(part / "sizes.json", "{}")
    write(killed / "video_cache.tmp" / "parts" / "00001.tmp" / "frames.bin",
          "a")
    output = kill_points.Output("parts", "video_cache.tmp", "video_cache")
    expected = kill_points.snapshot(str(reference))
    assert kill_points.half_written(
        output, str(killed), kill_points.snapshot(str(killed)), expected) == []
    write(part / "frames.bin", "abd")
    assert kill_points.half_written(
        output, str(killed), kill_points.snapshot(str(killed)), expected) == [
            "video_cache.tmp/parts/00000/frames.bin"]


def test_a_killed_runs_best_is_an_earlier_checkpoints_weights():
    """best/ follows validation, so a killed run's may be step 4's where the
    finished run's is step 10's: whole, but not the final one."""
    expected = {"run/best/model.keras": "config C weights W10",
                "run/checkpoints/ckpt-4.weights.h5": "W4"}
    best_so_far = kill_points._best_so_far  # pylint: disable=protected-access
    assert best_so_far("config C weights W4", "run/best/model.keras", expected)
    assert not best_so_far("config C weights W5", "run/best/model.keras", expected)
    assert not best_so_far("config D weights W4", "run/best/model.keras", expected)
    assert not best_so_far("W4", "run/best/run_config.json", expected)

def test_digests_leave_out_times_and_process_ids(tmp_path):
    for name, created in (("a", "2026-01-01"), ("b", "2027-02-02")):
        write(tmp_path / name / "meta.json", json.dumps({"n": 1, "created": created}))
        np.savez(tmp_path / name / "part.npz", x=np.arange(3))
    assert kill_points.snapshot(str(tmp_path / "a")) == kill_points.snapshot(
        str(tmp_path / "b"))
    assert kill_points._keras_config(  # pylint: disable=protected-access
        b'{"shared_object_id": 1407, "x": {"shared_object_id": 1407}}') == (
        b'{"shared_object_id": 0, "x": {"shared_object_id": 0}}')
    write(tmp_path / "c" / "ckpt-2.index", "torn")
    assert kill_points.snapshot(str(tmp_path / "c"))["ckpt-2.index"].startswith(
        "unreadable")


def test_leftovers_are_the_outermost_unfinished_entries(tmp_path):
    write(tmp_path / "sub.csv.tmp-12")
    write(tmp_path / "cache" / ".yt8m.lock")
    os.makedirs(tmp_path / "export" / ".tmp-1-ab" / "variables")  # empty
    write(tmp_path / "video_cache.tmp" / "parts" / "00000" / "frames.bin")
    write(tmp_path / "tmp" / "__autograph_generated_fileab12.py")
    assert kill_points.temporaries(str(tmp_path)) == [
        "cache/.yt8m.lock", "export/.tmp-1-ab/", "sub.csv.tmp-12", "video_cache.tmp/"]
    assert kill_points.strays(str(tmp_path)) == ["__autograph_generated_fileab12.py"]


def test_the_table_counts_kills_failures_and_their_kinds():
    kills = {"ensemble": [
        kill_points.Kill("ensemble", 0, 1.0, [], [], [], False),
        kill_points.Kill("ensemble", 1, 2.0, [("leftover", "cache/x.tmp-1"),
                                              ("resume_differs", "cache/a")], [], [], True)]}
    text = kill_points.report(kills, {"ensemble": 3.0}, {"ensemble": "bytes"})
    rows = [[cell.strip() for cell in line.split(" | ")] for line in text.splitlines()]
    assert rows[0][:4] == ["job", "kills", "survived", "failures (kinds)"]
    assert rows[2] == ["ensemble", "2", "1", "leftover 1, resume_differs 1", "bytes"]
    assert rows[3][:3] == ["total", "2", "1"]
    assert "FAILURE ensemble kill 1 at 2.00 s: leftover: cache/x.tmp-1" in text


def small_world(root):
    """What the ensemble job reads: two caches of the same segments."""
    world = kill_points.World(str(root))
    write_cache(world.test_cache_a, 0.5, 400)
    write_cache(world.test_cache_b, 0.25, 400)
    return world


def test_a_killed_ensemble_resumes_to_the_reference(tmp_path):
    """One real job in processes: the reference, one kill, checked, resumed
    and compared (~20 s on 2 cores)."""
    world = small_world(tmp_path / "world")
    seconds, kills = kill_points.run_job(kill_points.JOBS["ensemble"], world,
                                         str(tmp_path), 1, seed=0)
    assert seconds > 0 and len(kills) == 1
    assert kills[0].failures == []
    assert sorted(os.listdir(tmp_path / "runs" / "ensemble")) == ["reference"]


@pytest.mark.heavy
def test_every_job_survives_its_kills(tmp_path, capsys):
    """The bench itself, every job, 3 kills each (~15 minutes on 2 cores)."""
    assert kill_points.main(["--kills=3", f"--workdir={tmp_path}"]) == 0, (
        capsys.readouterr().out[-5000:])
