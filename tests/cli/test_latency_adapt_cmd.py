"""`ofakit latency adapt` (a user device from a few measured subnets) and `ofakit latency estimate` (a list of archs
in one call): synthetic records from a shipped GPU model; mistakes are one line and exit code 2."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofakit.cli.main import main
from ofakit.predict.structural import load_structural
from ofakit.space import get_space

SPACE = "ofa-mbv3-w1.2"


def _archs(n: int, seed: int) -> list:
    space, rng = get_space(SPACE), random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "devices"
    monkeypatch.setenv("OFAKIT_DEVICES_PATH", str(folder))
    return folder


def _records(path, archs, factor: float = 1.25):
    ms = factor * load_structural("v100-b32", SPACE).estimate_batch(archs)
    path.write_text("".join(json.dumps({"arch": a.to_dict(), "measured_ms": float(m)}) + "\n"
                            for a, m in zip(archs, ms)))
    return path


def test_adapt_makes_a_user_device_that_estimate_uses(user_dir, tmp_path, capsys):
    records = _records(tmp_path / "m.jsonl", _archs(20, 0))
    assert main(["latency", "adapt", "--device", "my-gpu", "--space", SPACE, "--records", str(records),
                 "--from", "v100-b32", "titan-xp-b32"]) == 0
    out, err = capsys.readouterr()
    assert "20 subnets over v100-b32, titan-xp-b32" in out and "cross-validated" in out
    assert (user_dir / "my-gpu.yaml").is_file() and (user_dir / "my-gpu.adapted.json").is_file()
    assert "OFAKIT_DEVICES_PATH" in err
    fresh = _archs(6, 1)
    lines = tmp_path / "archs.jsonl"
    lines.write_text("".join(json.dumps({k: v for k, v in a.to_dict().items() if k != "space"}) + "\n"
                             for a in fresh))
    assert main(["latency", "estimate", "--device", "my-gpu", "--space", SPACE, "--archs", str(lines),
                 "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [r["arch"] for r in rows] == [a.to_dict() for a in fresh]
    want = 1.25 * load_structural("v100-b32", SPACE).estimate_batch(fresh)
    assert np.allclose([r["latency_ms"] for r in rows], want, rtol=0.03)
    assert "adapted latency model of my-gpu" in err
    assert main(["devices", "--json"]) == 0  # provenance: what it was fitted on, from what, and its error
    mine = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "my-gpu")
    [model] = mine["latency_models"]
    assert model["kind"] == "few-shot adaptation" and model["records"] == 20
    assert model["sources"] == ["v100-b32", "titan-xp-b32"] and "within_10pct" in model["held_out"]


def test_estimate_refuses_an_arch_of_another_space(tmp_path, capsys):
    lines = tmp_path / "archs.jsonl"
    arch = get_space("ofa-mbv3-w1.0").smallest().to_dict()
    lines.write_text(json.dumps(arch) + "\n")
    assert main(["latency", "estimate", "--device", "v100", "--space", SPACE, "--archs", str(lines)]) == 2
    err = capsys.readouterr().err.strip()
    assert "archs.jsonl: line 1:" in err and "ofa-mbv3-w1.0" in err and len(err.splitlines()) == 1


def test_adapt_mistakes_are_one_line(user_dir, tmp_path, capsys):
    assert main(["latency", "adapt", "--device", "x", "--space", SPACE, "--records",
                 str(tmp_path / "none.jsonl")]) == 2
    assert "cannot read measured subnets" in capsys.readouterr().err
    records = _records(tmp_path / "m.jsonl", _archs(5, 2))
    assert main(["latency", "adapt", "--device", "x", "--space", SPACE, "--records", str(records), "--from",
                 "v100-b32", "--out", str(tmp_path / "model.json")]) == 2
    assert "--out must be named x.adapted.json" in capsys.readouterr().err
