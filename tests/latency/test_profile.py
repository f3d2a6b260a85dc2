"""Profiling on this CPU (tiny space, one resolution, few repetitions): a full table, rounds, resume after a crash
or kill -9, and refusal to mix environments."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ofakit.errors import CapabilityError, ConfigError
from ofakit.latency.backends import Runner
from ofakit.latency.devices import get_device
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.layers import distinct_layers, plan, reference_arch
from ofakit.latency.profile import ProfileConfig, profile
from ofakit.latency.table import LatencyTable, layer_key
from ofakit.space import get_space

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
FAST = ProfileConfig(resolutions=(16,), warmup=1, reps=3, flush_every=8, reference_reps=3, overhead_reps=20)


def test_plan_holds_every_layer_once():
    sp = get_space("ofa-mbv3-w1.0")
    layers = distinct_layers(sp, 224)
    assert len(layers) == len(set(layers)) == 2 + 5 * 2 * 9 + 4
    assert layers[0].op == "stem" and layers[-1].op == "classifier"
    assert sum(len(v) for v in plan(get_space("ofa-mbv3-cifar"), (24, 28, 32)).values()) == 3 * 96


def test_reference_is_a_middle_subnet():
    arch = reference_arch(get_space("ofa-mbv3-w1.0"))
    assert (arch.resolution, set(arch.kernel_sizes), set(arch.expand_ratios), arch.depths) == (176, {5}, {4}, (3,) * 5)


def test_profile_covers_the_space_and_records_how(tiny_table):
    sp = get_space("tiny")
    assert set(tiny_table.entries[16]) == {layer_key(x) for x in distinct_layers(sp, 16)}
    meta = tiny_table.meta
    assert (meta["device"], meta["space"], meta["backend"], meta["threads"]) == ("cpu-ort", "tiny", "onnxruntime", 1)
    env = meta["environment"]
    assert env["runtime"] == "onnxruntime" and env["runtime_version"] and env["host"] and env["profile_seconds"] > 0
    assert meta["reference"]["arch"] == reference_arch(sp).to_dict() and meta["reference"]["ms"] > 0
    assert 0 < meta["call_overhead_ms"] < 1
    entries = list(tiny_table.entries[16].values())
    assert meta["statistic"] == "p10"  # what estimates sum
    assert all(e.count == 3 and 0 < e.p10 <= e.median and e.ref_ms > 0 for e in entries)
    assert len({e.ref_ms for e in entries}) > 1  # one reference level per round
    back = LatencyTable.load(tiny_table.path)  # what is on disk is the same
    assert back.entries == tiny_table.entries
    est = LutEstimator(back).estimate_batch([sp.smallest()])
    assert est[0] > 0


def test_rerun_measures_nothing_new(tiny_table):
    seen = []
    profile(get_device("cpu-ort"), get_space("tiny"), tiny_table.path, FAST,
            on_start=lambda n, have: seen.append((n, have)))
    assert seen == [(0, len(tiny_table))]


def test_resume_after_a_crash_mid_round(tmp_path):
    out = tmp_path / "t.json"

    def crash(p):
        if p.done == 11:  # in the second round: the first (8 layers) is on disk, the rest is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile(get_device("cpu-ort"), get_space("tiny"), out, FAST, on_progress=crash)
    assert len(LatencyTable.load(out)) == 8
    seen = []
    table = profile(get_device("cpu-ort"), get_space("tiny"), out, FAST,
                    on_start=lambda n, have: seen.append((n, have)))
    total = len(distinct_layers(get_space("tiny"), 16))
    assert seen == [(total - 8, 8)] and len(table) == total


def test_resume_after_kill_9(tmp_path):
    out = tmp_path / "t.json"
    argv = [sys.executable, "-m", "ofakit", "profile", "--device", "cpu-ort", "--space", "tiny", "--resolutions", "16",
            "--reps", "3", "--warmup", "1", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.exists(), proc.stderr.read().decode()
    stored = len(LatencyTable.load(out))  # a complete JSON file, never half-written
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    total = len(distinct_layers(get_space("tiny"), 16))
    assert f"{total - stored} layer(s) measured, {stored} already stored" in done.stderr
    assert len(LatencyTable.load(out)) == total


def test_resuming_in_another_environment_is_refused(tiny_table, tmp_path):
    data = json.loads(tiny_table.path.read_text())
    data["meta"]["environment"]["runtime_version"] = "0.0.1"
    (tmp_path / "t.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"was profiled in another environment \(runtime_version '0.0.1' -> "):
        profile(get_device("cpu-ort"), get_space("tiny"), tmp_path / "t.json", FAST)


@pytest.mark.parametrize(("setting", "table_value", "device_value"), [
    ("batch", 1, 8), ("threads", 1, 2), ("precision", "fp16", "fp32"),
])
def test_resuming_with_other_device_settings_is_refused(tiny_table, tmp_path, setting, table_value, device_value):
    """The device's batch, precision and threads are what a table's timings are of: a table profiled with others is
    not resumed (fp16 on the CPU backend is set in the table, the backend refusing it on the device)."""
    data = json.loads(tiny_table.path.read_text())
    data["meta"][setting] = table_value
    (tmp_path / "t.json").write_text(json.dumps(data))
    device = get_device("cpu-ort")
    if setting != "precision":
        device = dataclasses.replace(device, backend=dataclasses.replace(device.backend, **{setting: device_value}))
    before = (tmp_path / "t.json").read_text()
    with pytest.raises(ConfigError, match=rf"t\.json was profiled with other settings of device 'cpu-ort' \({setting} "
                                          rf"'?{table_value}'? -> '?{device_value}'?\); resuming would mix two "
                                          r"measurements: pass another --out, or delete the file to start over"):
        profile(device, get_space("tiny"), tmp_path / "t.json", FAST)
    assert (tmp_path / "t.json").read_text() == before


class _FastLayers(Runner):
    """A runner whose every call takes `ms`."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def time(self, n: int) -> list[float]:
        return [self.ms] * n


def test_resuming_another_spaces_table_is_refused(tiny_table):
    with pytest.raises(ConfigError, match=r"is the table of device 'cpu-ort' and space 'tiny', not 'cpu-ort' and "
                                          r"'ofa-mbv3-cifar'; pass another --out"):
        profile(get_device("cpu-ort"), get_space("ofa-mbv3-cifar"), tiny_table.path, FAST)


def test_spaces_without_layer_enumeration_are_refused(tmp_path):
    with pytest.raises(CapabilityError, match=r"space 'ofa-resnet50' \(resnet family\) has no layer enumeration, "
                                              r"which layer-by-layer profiling"):
        profile(get_device("cpu-ort"), get_space("ofa-resnet50"), tmp_path / "t.json", FAST)


def test_reference_scale_follows_the_machine(tiny_table):
    from ofakit.latency.backends import backend_for
    from ofakit.latency.profile import reference_scale

    scale = reference_scale(tiny_table, backend_for(get_device("cpu-ort")), get_space("tiny"), reps=5, seconds=0.05)
    assert 0.1 < scale < 10


def test_reference_scale_needs_a_profiled_table():
    from ofakit.latency.backends import backend_for
    from ofakit.latency.profile import reference_scale
    from ofakit.latency.table import find_table

    table = find_table("note10", "ofa-mbv3-w1.2")
    with pytest.raises(ConfigError, match=r"latency table 'note10_ofa-mbv3-w1.2' has no reference measurement"):
        reference_scale(table, backend_for(get_device("cpu-ort")), get_space("ofa-mbv3-w1.2"))
