"""The run directory: run.json round trips (resumes included, older files without them still read), --out checks
create nothing, and a live process's lock keeps a second `ofakit train` out until that process dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ofakit.errors import ConfigError
from ofakit.train.run_dir import (LOCK, RunLock, RunRecord, TrainingError, check_out_dir, check_run_dir,
                                  checkpoint_run_record, is_checkpoint, read_run_record, write_run_record)

REPO = Path(__file__).resolve().parents[2]
RECIPE = ("space: tiny\ndata: digits\nbatch_size: 32\nbase_batch_size: 32\neval_max_batches: 1\n"
          "recalibration_batches: 1\neval_random_subnets: 0\nstages:\n  - {name: a, sampler: largest, max_steps: 1}\n")


def test_run_record_round_trip(tmp_path):
    record = RunRecord(digest="d" * 16, recipe={"seed": 1, "stages": [{"name": "a"}]}, recipe_name="r.yaml",
                       world_size=2)
    write_run_record(tmp_path, record)
    assert list(json.loads((tmp_path / "run.json").read_text())) == ["recipe", "recipe_name", "digest", "world_size"]
    resumed = record.resumed(4, 200).resumed(4, 400)
    write_run_record(tmp_path, resumed)
    back = read_run_record(tmp_path)
    assert back == resumed and [(r.world_size, r.step) for r in back.resumes] == [(4, 200), (4, 400)]
    assert read_run_record(tmp_path / "none") is None


def test_a_checkpoint_folder_is_told_from_a_bundle_and_finds_its_run(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step-00000200"
    step.mkdir(parents=True)
    (step / "state.json").write_text("{}")
    assert not is_checkpoint(step)  # its weights not written yet: not a checkpoint
    (step / "model.safetensors").write_bytes(b"")
    assert is_checkpoint(step) and is_checkpoint(str(step))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.safetensors").write_bytes(b"")
    assert not is_checkpoint(bundle)
    with pytest.raises(ConfigError, match=r"^init .*step-00000200 looks like a checkpoint, but .*run/run\.json is "
                                          "missing"):
        checkpoint_run_record(step, "init")
    write_run_record(tmp_path / "run", RunRecord(digest="d" * 16, recipe={"space": "tiny"}))
    assert checkpoint_run_record(step).recipe == {"space": "tiny"}


def test_out_checks_create_nothing(tmp_path):
    check_out_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file; pass a run directory"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(ConfigError, match="cannot create run directory .* is a file"):
        check_out_dir(tmp_path / "f" / "run")
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(ConfigError, match="is not writable"):
            check_out_dir(tmp_path / "ro" / "run")


def test_an_out_that_is_a_dangling_link_is_one_error(cli, tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match=r"cannot create run directory .*link: .*link is a symbolic link to "
                                          r".*gone, which does not exist"):
        check_out_dir(tmp_path / "link")
    with pytest.raises(ConfigError, match=r"cannot create run directory .*link/run: .*link is a symbolic link"):
        check_out_dir(tmp_path / "link" / "run")
    (tmp_path / "r.yaml").write_text(RECIPE)
    cli("train", "--recipe", tmp_path / "r.yaml", "--out", tmp_path / "link", "--quiet").assert_user_error(
        "is a symbolic link to")
    assert not (tmp_path / "gone").exists()


def test_the_lock_file_alone_is_an_empty_run_directory(tmp_path):
    (tmp_path / LOCK).write_text("")
    assert check_run_dir(tmp_path, "d", {}) is None
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not empty and holds no ofakit run"):
        check_run_dir(tmp_path, "d", {})


HOLD = """
import sys, time
from pathlib import Path
from ofakit.train.run_dir import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_live_process_keeps_a_second_train_out_until_it_dies(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = cli("train", "--recipe", recipe, "--out", run, "--quiet")
        result.assert_user_error(f"{run} is being trained by another live process (pid {holder.pid} on ",
                                 "wait for it to end, or pass another --out")
        assert sorted(p.name for p in run.iterdir()) == [LOCK]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the kernel dropped the dead holder's lock: training goes on, and removes the lock file when done
    assert cli("train", "--recipe", recipe, "--out", run, "--quiet").code == 0
    assert (run / "bundle" / "bundle.json").is_file() and not (run / LOCK).exists()


def test_a_lock_is_exclusive_and_released(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    with first:
        with pytest.raises(TrainingError, match=f"pid {os.getpid()} on"):
            second.acquire()
    assert not (tmp_path / LOCK).exists()
    with second:
        assert (tmp_path / LOCK).read_text().startswith(f"pid {os.getpid()}")
