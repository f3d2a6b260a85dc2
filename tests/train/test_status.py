"""A run's status from its folder alone: a real tiny run seen from inside a step (training), stopped, resumed and
finished; the schedule from run.json's training-split size (and an older run.json without it); pace and time left;
the lock's holder alive, dead or on another host; folders that hold no run; the plot."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ofakit.errors import ConfigError
from ofakit.train.config import recipe_from_dict
from ofakit.train.data import load_dataset
from ofakit.train.loop import run_training
from ofakit.train.run_dir import LOCK, RunRecord, lock_holder, read_run_record, write_run_record
from ofakit.train.status import describe, duration, plot_status, run_status
from tests.train.test_loop import tiny_recipe

TOTAL = 10  # tiny_recipe's stages: full 4 steps, kernel 3, expand 3


def test_a_run_seen_while_it_trains_when_stopped_and_when_finished(tmp_path):
    run, seen = tmp_path / "run", {}
    cfg = recipe_from_dict(tiny_recipe())

    def look_at_6(step: int) -> None:
        if step == 6:
            seen["status"] = run_status(run)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, run, progress=False, log_every=1, on_step=look_at_6)
    inside = seen["status"]
    assert inside.state == "training" and inside.holder.startswith(f"pid {os.getpid()} on ")
    assert (inside.step, inside.total_steps) == (6, TOTAL)
    assert (inside.stage, inside.stage_index, inside.stages, inside.epoch, inside.epochs) == ("kernel", 2, 3, 1, 1)
    assert inside.checkpoint_step in (4, 6) and inside.train_seconds > 0 and inside.resumes == 0
    # the pace is the median of the kernel stage's logged img/s; time left is steps left x images a step / pace
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kernel = sorted(r["img_per_s"] for r in rows if r.get("stage") == "kernel" and "img_per_s" in r)
    assert len(kernel) == 2 and inside.img_per_s == pytest.approx(sum(kernel) / 2)
    assert inside.stage_left_s == pytest.approx(1 * 32 / inside.img_per_s)
    assert inside.run_left_s == pytest.approx(4 * 32 / inside.img_per_s)
    assert [(e.stage, e.step) for e in inside.evaluations] == [("full", 4)]
    assert set(inside.evaluations[0].top1) == {"largest", "smallest"}
    assert all(0 <= v <= 1 for v in inside.evaluations[0].top1.values())

    stopped = run_status(run)
    assert stopped.state == "stopped" and stopped.holder == "" and stopped.step == 6
    text = "\n".join(describe(stopped))
    assert "stopped" in text and "stage kernel (2 of 3), epoch 1 of 1" in text and "step 6 of 10 (60.0 %)" in text
    assert "resume: run the same `ofakit train` command" in text and str(run) in text

    run_training(cfg, run, progress=False, log_every=1)
    done = run_status(run)
    assert done.state == "finished" and (done.step, done.total_steps) == (TOTAL, TOTAL) and done.resumes == 1
    assert done.stage == "" and done.img_per_s is None and done.run_left_s is None
    assert [e.stage for e in done.evaluations] == ["full", "kernel", "expand"]
    assert "resume:" not in "\n".join(describe(done))


def test_run_json_records_the_training_split_and_a_resume_adds_it_to_an_older_one(tmp_path):
    run = tmp_path / "run"
    cfg = recipe_from_dict(tiny_recipe())
    images = len(load_dataset("digits", "train"))

    def stop_at_5(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, run, progress=False, on_step=stop_at_5)
    assert read_run_record(run).train_images == images
    older = json.loads((run / "run.json").read_text())
    del older["train_images"]  # as ofakit wrote it before it recorded the split
    (run / "run.json").write_text(json.dumps(older))
    status = run_status(run)
    assert status.total_steps is None and status.stage == ""
    assert status.step == status.checkpoint_step == 4  # logged every 10 steps: the checkpoint is the latest news
    assert "steps in all: not known" in "\n".join(describe(status))
    run_training(cfg, run, progress=False)
    record = read_run_record(run)
    assert record.train_images == images and len(record.resumes) == 1
    assert run_status(run).total_steps == TOTAL


def _fake_run(path, rows, train_images=32 * 50, recipe_name="two.yaml"):
    """A run folder by hand: run.json of a two-stage recipe (50 steps an epoch at batch 32), metrics rows."""
    recipe = tiny_recipe(stages=[{"name": "a", "sampler": "largest", "epochs": 2},
                                 {"name": "b", "epochs": 3, "subnets_per_step": 2}])
    cfg = recipe_from_dict(recipe)
    path.mkdir()
    write_run_record(path, RunRecord(digest=cfg.digest(), recipe=cfg.to_dict(), recipe_name=recipe_name,
                                     train_images=train_images))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pace_and_time_left_come_from_the_current_stage_only(tmp_path):
    rows = [{"step": s, "stage": "a", "epoch": 0, "loss": 1.0, "lr": 0.1, "img_per_s": 1000.0}
            for s in range(10, 101, 10)]
    rows.append({"step": 100, "stage": "a", "eval": {"largest": {"top1": 0.5}, "smallest": 0.25}})
    rows += [{"step": s, "stage": "b", "epoch": 1, "loss": 1.0, "lr": 0.1, "img_per_s": v}
             for s, v in [(110, 64.0), (120, 32.0), (130, 16.0)]]
    status = run_status(_fake_run(tmp_path / "run", rows))
    assert status.state == "stopped" and (status.step, status.total_steps) == (130, 250)
    assert (status.stage, status.stage_index, status.epoch, status.epochs) == ("b", 2, 1, 3)
    assert status.img_per_s == 32.0  # the median of stage b's, not stage a's 1000
    assert status.stage_left_s == status.run_left_s == pytest.approx(120 * 32 / 32.0)
    assert status.evaluations[0].top1 == {"largest": 0.5, "smallest": 0.25}
    assert status.checkpoint_step is None and status.train_seconds is None


def test_evaluations_within_a_stage_are_told_from_stage_ends(tmp_path):
    rows = [{"step": s, "stage": "a" if s <= 100 else "b", "epoch": (s - 1) // 50 % 2, "loss": 1.0, "lr": 0.1,
             "img_per_s": 100.0} for s in range(10, 131, 10)]
    rows += [{"step": 50, "stage": "a", "epochs_done": 1, "stage_end": False, "eval": {"largest": {"top1": 0.4}}},
             {"step": 100, "stage": "a", "epochs_done": 2, "stage_end": True, "eval": {"largest": {"top1": 0.5}}},
             {"step": 100, "stage": "b", "eval": {"largest": {"top1": 0.6}}}]  # an older run's: a stage end
    status = run_status(_fake_run(tmp_path / "run", rows))
    assert [(e.step, e.epochs_done, e.stage_end) for e in status.evaluations] == [
        (50, 1, False), (100, 2, True), (100, None, True)]
    text = "\n".join(describe(status))
    assert "evaluation in stage a after epoch 1 (step 50): largest 40.00 %" in text
    assert "evaluation after stage a (step 100): largest 50.00 %" in text


def test_a_folder_with_no_run_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder; pass the --out folder"):
        run_status(tmp_path / "missing")
    with pytest.raises(ConfigError, match="holds no run.json, so no ofakit training run"):
        run_status(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ConfigError, match="run.json"):
        run_status(tmp_path)


def test_the_lock_holder_alive_dead_or_elsewhere(tmp_path):
    run = _fake_run(tmp_path / "run", [{"step": 10, "stage": "a", "loss": 1.0, "lr": 0.1, "img_per_s": 100.0}])
    assert lock_holder(run) is None
    host = socket.gethostname()
    (run / LOCK).write_text(f"pid {os.getpid()} on {host}")
    assert lock_holder(run) == (f"pid {os.getpid()} on {host}", True) and run_status(run).state == "training"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK).write_text(f"pid {dead.pid} on {host}")  # a kill -9 leaves the file, not the lock
    assert lock_holder(run) == (f"pid {dead.pid} on {host}", False) and run_status(run).state == "stopped"
    (run / LOCK).write_text(f"pid 1 on {host}-elsewhere")
    status = run_status(run)
    assert status.state == "unknown" and "on another machine: not checked" in describe(status)[0]


def test_duration():
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3600 + 5 * 60, 2 * 86400 + 3 * 3600)] == [
        "0 s", "59 s", "1 min", "59 min", "1 h 05 min", "2 d 3 h"]


def test_the_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"step": s, "stage": "a" if s <= 100 else "b", "epoch": 0, "loss": 2.0 / s, "lr": 0.1,
             "img_per_s": 100.0} for s in range(10, 201, 10)]
    rows.append({"step": 100, "stage": "a", "eval": {"largest": {"top1": 0.5}}})
    run = _fake_run(tmp_path / "run", rows)
    out = plot_status(run_status(run), tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    empty = _fake_run(tmp_path / "empty", [])
    with pytest.raises(ConfigError, match="no logged steps yet"):
        plot_status(run_status(empty), tmp_path / "x.png")


def test_an_older_run_json_still_gives_the_pace(tmp_path):
    rows = [{"step": s, "stage": "a", "epoch": 0, "loss": 1.0, "lr": 0.1, "img_per_s": 200.0} for s in (10, 20)]
    status = run_status(_fake_run(tmp_path / "run", rows, train_images=0))
    assert status.total_steps is None and status.img_per_s == 200.0 and status.run_left_s is None
    assert "pace 200 img/s; steps in all: not known" in describe(status)[2]


def test_a_stopped_fine_tuning_run_is_resumed_by_finetune(tmp_path):
    from ofakit.train.finetune import RECIPE_NAME

    rows = [{"step": 10, "stage": "a", "epoch": 0, "loss": 1.0, "lr": 0.1, "img_per_s": 200.0}]
    text = "\n".join(describe(run_status(_fake_run(tmp_path / "run", rows, recipe_name=RECIPE_NAME))))
    assert "resume: run the same `ofakit finetune` command" in text


def test_a_torn_line_in_the_middle_of_the_metrics_is_skipped(tmp_path):
    """Metrics are ofakit's own log: a line an older append left torn in the middle (a kill, then a resume) is
    skipped, as a torn last line is, rather than stop `status`."""
    rows = [{"step": s, "stage": "a", "epoch": 0, "loss": 1.0, "lr": 0.1, "img_per_s": 100.0} for s in (10, 20)]
    run = _fake_run(tmp_path / "run", rows)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 30, "stage": "a", "lo\n{"step": 30, "stage": "a", "epoch": 0, "loss": 1.0, "lr": 0.1, '
                 '"img_per_s": 100.0}\n{"step": 40, "sta')
    assert run_status(run).step == 30


def test_odd_values_in_a_users_files_give_no_traceback(tmp_path):
    run = _fake_run(tmp_path / "run", [])
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "world_size": 0}))  # no steps an epoch: no schedule
    (run / "metrics.jsonl").write_text('[1, 2]\n{"step": 5, "stage": "a", "img_per_s": "fast"}\n'
                                       '{"step": 6, "stage": "a", "loss": 1.0, "img_per_s": 50}\n'
                                       '{"step": 7, "eval": {"x": [1], "y": {"top1": "high"}, "z": 0.5}}\n')
    status = run_status(run)
    assert status.total_steps is None and status.step == 6 and status.img_per_s == 50
    assert [e.top1 for e in status.evaluations] == [{"z": 0.5}]
