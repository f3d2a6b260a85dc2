"""`ofakit status RUN_DIR`: the text and JSON of a run's status, the plot, and one line with exit 2 for a folder that
holds no run (torch stays out: tests/cli/test_cli.py)."""
from __future__ import annotations

import json

import pytest

from tests.train.test_status import _fake_run

ROWS = [{"step": s, "stage": "a", "epoch": 0, "loss": 1.0, "lr": 0.1, "img_per_s": 160.0} for s in range(10, 61, 10)]


def test_text_and_json(cli, tmp_path):
    run = _fake_run(tmp_path / "run", ROWS)
    result = cli("status", run)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == f"{run}: stopped"
    assert "step 60 of 250 (24.0 %)" in result.out and "stage a (1 of 2), epoch 2 of 2" in result.out
    # 40 steps of 32 images left in stage a at 160 img/s: 8 s; 190 in the run: 38 s
    assert "pace 160 img/s: 8 s of training left in this stage, 38 s in the run at this pace" in result.out
    assert "resume: run the same `ofakit train` command (recipe two.yaml" in result.out
    data = json.loads(cli("status", run, "--json").out)
    assert data["state"] == "stopped" and data["step"] == 60 and data["total_steps"] == 250
    assert data["stage_left_s"] == pytest.approx(8.0) and data["run_left_s"] == pytest.approx(38.0)


def test_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    run = _fake_run(tmp_path / "run", ROWS)
    result = cli("status", run, "--plot", tmp_path / "curves.png")
    assert result.code == 0 and "plot written to" in result.err
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_folders_that_hold_no_run_are_one_line(cli, tmp_path):
    cli("status", tmp_path / "nope").assert_user_error(f"{tmp_path / 'nope'} is not a folder",
                                                       "pass the --out folder of an `ofakit train`")
    cli("status", tmp_path).assert_user_error("holds no run.json, so no ofakit training run")
    (tmp_path / "run.json").write_text('{"digest": "x", "recipe": {"space": "nope"}}')
    cli("status", tmp_path).assert_user_error("run.json")
    (tmp_path / "run.json").write_bytes(b"\xff\xfe garbage")
    cli("status", tmp_path).assert_user_error("run.json")
    run = _fake_run(tmp_path / "run", ROWS)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    cli("status", run).assert_user_error("metrics.jsonl")


def test_a_plot_path_in_the_way_is_one_line_before_anything_is_printed(cli, tmp_path):
    pytest.importorskip("matplotlib")
    run = _fake_run(tmp_path / "run", ROWS)
    (tmp_path / "taken").write_text("mine")
    for bad, fragment in ((tmp_path, "it is a folder"), (tmp_path / "taken" / "c.png", "is not a directory")):
        result = cli("status", run, "--plot", bad)
        result.assert_user_error("cannot write the plot", fragment)
        assert result.out == ""
