"""The latency commands: `ofakit devices`, `profile`, `latency convert-mit`, `arch info --device`; user mistakes are
one line and exit 2, and the commands that run no network do not import torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ofakit.latency.devices import devices
from ofakit.space import get_space

ROOT = Path(__file__).resolve().parents[2]


def test_devices_table(cli):
    result = cli("devices")
    assert result.code == 0
    for name in devices().names():
        assert name in result.out
    assert "ofa-mbv3-w1.2" in result.out  # note10's table


def test_devices_json(cli):
    result = cli("devices", "--json")
    assert result.code == 0
    records = {r["name"]: r for r in json.loads(result.out)}
    assert set(records) == set(devices().names())
    assert records["pixel1"]["aliases"] == ["pixel"]
    assert list(records["note10"]["tables"]) == ["ofa-mbv3-w1.2"]
    assert records["h100-tensorrt"]["tables"] == {}
    assert records["cpu-ort"]["backend"] == {"name": "onnxruntime", "threads": 1, "precision": "fp32", "batch": 1,
                                             "providers": ["CPUExecutionProvider"], "compute_units": ""}


def test_devices_say_how_each_latency_is_estimated_and_how_far_off_it_is(cli):
    """Provenance: every model names its kind, spaces, file, and its error on data it was not fitted on; data from
    elsewhere carries its attribution; a device with nothing behind it names what to measure."""
    records = {r["name"]: r for r in json.loads(cli("devices", "--json").out)}
    kinds = {name: [m["kind"] for m in r["latency_models"]] for name, r in records.items()}
    assert kinds["cpu-ort"].count("measured table") == 2 and "learned predictor over the table" in kinds["cpu-ort"]
    assert kinds["note10"] == ["converted table", "op model from a table"]
    assert "calibrated transfer" in kinds["pixel1"] and kinds["h100-torch"] == []
    for name, r in records.items():
        for m in r["latency_models"]:
            assert m["spaces"] and m["file"], (name, m)
            if m["kind"] != "measured table" and m["kind"] != "converted table":
                assert m.get("held_out"), (name, m)  # an error on held-out data, never a bare model
            if m["kind"] in ("converted table", "structural model"):
                assert "attribution" in m or "attribution" in m.get("base", {}), (name, m)
    pixel = next(m for m in records["pixel1"]["latency_models"] if m["kind"] == "calibrated transfer")
    assert pixel["nets"] == 7 and pixel["held_out"]["max_pct"] < 5
    gpu = [m for name, r in records.items() if name.startswith("v100") for m in r["latency_models"]]
    assert len(gpu) == 3 and all(m["records"] == 4000 and m["held_out"]["subnets"] == 1000 for m in gpu)
    text = cli("devices").out
    assert "how latency is estimated" in text and "nothing measured yet" in text


def test_devices_name_a_broken_model_file_and_list_the_rest(cli, tmp_path, monkeypatch):
    """A predictor file that is not JSON beside a table: one warning naming the file, the model listed as
    unreadable, every device and every other model still listed, no traceback (other malformed files:
    tests/predict/test_provenance.py)."""
    from ofakit.latency.table import TABLES_PATH_ENV, find_table

    table = find_table("cpu-ort", "ofa-mbv3-cifar").path
    (tmp_path / table.name).write_bytes(table.read_bytes())
    broken = tmp_path / "cpu-ort_ofa-mbv3-cifar.predictor.json"
    broken.write_text("garbage")
    monkeypatch.setenv(TABLES_PATH_ENV, str(tmp_path))
    result = cli("devices", "--json")
    assert result.code == 0 and "Traceback" not in result.err
    [warning] = result.err.splitlines()
    assert warning.startswith(f"ofakit: warning: device 'cpu-ort': {broken}: not an ofakit latency predictor")
    records = {r["name"]: r for r in json.loads(result.out)}
    assert set(records) == set(devices().names())
    kinds = [m["kind"] for m in records["cpu-ort"]["latency_models"]]
    assert kinds.count("unreadable file") == 1 and kinds.count("measured table") == 2
    assert "learned predictor over the table" in kinds  # the other space's predictor
    text = cli("devices")
    assert text.code == 0 and "unreadable file" in text.out and text.err == result.err


def test_arch_info_with_a_device(cli, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"space": "ofa-mbv3-w1.2", "resolution": 224, "depths": [2, 3, 3, 3, 4],
                                "kernel_sizes": [3, 3, 3, 3, 5, 3, 3, 3, 5, 5, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
                                "expand_ratios": [3, 3, 3, 3, 4, 3, 4, 3, 4, 4, 3, 3, 6, 4, 4, 3, 6, 6, 4, 3]}))
    result = cli("arch", "info", path, "--device", "note10", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert round(info["latency_ms"], 2) == 29.97  # MIT's note10_lat-30ms net
    assert info["latency_estimator"] == "lut" and info["device"] == "note10"
    assert info["latency_table"].endswith("note10_ofa-mbv3-w1.2.json")
    text = cli("arch", "info", path, "--device", "note10")
    assert "latency     29.97 ms on note10 (lut" in text.out


def test_arch_info_drift_measures_the_reference_now(cli, tmp_path):
    """--drift times the table's reference model with ONNX Runtime here and scales the estimate by the ratio."""
    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.table import find_table

    arch = get_space("ofa-mbv3-cifar").largest()
    path = tmp_path / "a.json"
    path.write_text(arch.to_json())
    result = cli("arch", "info", path, "--device", "cpu-ort", "--latency-model", "lut", "--drift", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    scale = info["latency_drift_scale"]
    assert 0.2 < scale < 5  # the same model on the same kind of machine: a drift, not a unit error
    lut = LutEstimator(find_table("cpu-ort", "ofa-mbv3-cifar")).estimate(arch)
    assert info["latency_ms"] == pytest.approx(lut * scale, rel=1e-3)
    assert " x drift " in cli("arch", "info", path, "--device", "cpu-ort", "--drift").out
    cli("arch", "info", path, "--drift").assert_user_error("--drift needs --device")
    w12 = tmp_path / "w12.json"
    w12.write_text(get_space("ofa-mbv3-w1.2").largest().to_json())
    cli("arch", "info", w12, "--device", "note10", "--drift").assert_user_error(
        "--drift: table 'note10_ofa-mbv3-w1.2' has no reference measurement (converted tables do not)")


def test_arch_info_device_without_a_table(cli, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(get_space("ofa-mbv3-w1.0").largest().to_json())
    cli("arch", "info", path, "--device", "h100-tensorrtt").assert_user_error("unknown device 'h100-tensorrtt'",
                                                                       "Did you mean 'h100-tensorrt'?")
    cli("arch", "info", path, "--device", "h100-tensorrt").assert_user_error(
        "no latency table for device 'h100-tensorrt' and space 'ofa-mbv3-w1.0'",
        "run: ofakit profile --device h100-tensorrt --space ofa-mbv3-w1.0")


@pytest.mark.parametrize(("argv", "fragments"), [
    (["profile", "--device", "note1", "--space", "tiny"], ["unknown device 'note1'", "Did you mean 'note10'?"]),
    (["profile", "--device", "cpu-ort", "--space", "tinny"], ["unknown search space 'tinny'", "Did you mean 'tiny'?"]),
    (["profile", "--device", "note10", "--space", "ofa-mbv3-w1.2"],
     ["device 'note10' uses backend 'tflite', which ofakit cannot run"]),
    (["profile", "--device", "cpu-ort", "--space", "tiny", "--reps", "0"], ["--reps must be >= 1"]),
    (["profile", "--device", "cpu-ort", "--space", "ofa-resnet50"], ["has no layer enumeration"]),
])
def test_profile_mistakes_are_one_line(cli, tmp_path, argv, fragments):
    cli(*argv, "--out", tmp_path / "t.json", "--no-progress").assert_user_error(*fragments)


def test_convert_mit(cli, tmp_path):
    """A table in the form of MIT's Pixel 1 table (ProxylessNAS keys, {count, mean, var}) with two entries no layer
    of the space has, as MIT's has: every layer gets its entry, the unused two are noted."""
    import yaml

    from ofakit.latency.layers import distinct_layers
    from ofakit.latency.mit import mit_key

    layers = distinct_layers(get_space("proxyless-mobile"), 224)
    pool = next(x for x in layers if x.op == "pool")
    source = {mit_key(x, "proxyless", pool=pool): {"count": 50, "mean": 1.0 + i / 8, "var": 0.01}
              for i, x in enumerate(layers) if x.op != "pool"}
    for kernel in (9, 11):
        source[f"expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:{kernel}-stride:1-idskip:0"] = {
            "count": 50, "mean": 5.0, "var": 0.04}
    (tmp_path / "mobile_trim.yaml").write_text(yaml.safe_dump(source))
    out = tmp_path / "p.json"
    result = cli("latency", "convert-mit", tmp_path / "mobile_trim.yaml", "--device", "pixel", "--space",
                 "proxyless-mobile", "--out", out)
    assert result.code == 0, result.err
    assert "2 source entries at 224 match no layer" in result.err
    assert f"wrote {out} ({len(layers)} entries" in result.err
    table = json.loads(out.read_text())
    assert table["meta"]["device"] == "pixel1" and table["meta"]["space"] == "proxyless-mobile"
    entries = table["entries"]["224"]
    assert sorted(e["mean"] for e in entries.values() if e["mean"] > 0) == sorted(
        v["mean"] for k, v in source.items() if "kernel:9" not in k and "kernel:11" not in k)
    assert all(e["std"] == pytest.approx(0.1) for e in entries.values() if e["mean"] > 0)


def test_convert_mit_mistakes(cli, tmp_path):
    (tmp_path / "t.yaml").write_text("a: [b\n")
    cli("latency", "convert-mit", tmp_path / "t.yaml", "--device", "pixel", "--space", "proxyless-mobile",
        "--out", tmp_path / "o.json").assert_user_error("t.yaml: not a MIT latency table (YAML) (not YAML")
    for space in ("proxyless-mobile", "ofa-mbv3-w1.2"):  # one resolution, or many: either way it is not there
        cli("latency", "convert-mit", tmp_path / "none.yaml", "--device", "pixel", "--space", space
            ).assert_user_error("none.yaml does not exist")


def _arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "arch.json"
    path.write_text(get_space("ofa-mbv3-w1.2").largest().to_json())
    return path


@pytest.mark.parametrize(("argv", "code"), [
    (["devices"], 0),
    (["devices", "--json"], 0),
    (["profile", "--help"], 0),
    (["latency", "--help"], 0),
    (["arch", "info", _arch_file, "--device", "note10"], 0),
    (["arch", "info", _arch_file, "--device", "h100-torch"], 2),
], ids=["devices", "devices-json", "profile-help", "latency-help", "arch-info-device", "arch-info-no-table"])
def test_light_commands_do_not_import_torch(tmp_path, argv, code):
    argv = [str(a(tmp_path)) if callable(a) else a for a in argv]
    script = (f"import sys; from ofakit.cli.main import main; code = main({argv!r}); "
              f"bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; "
              f"assert not bad, f'imported {{bad}}'; sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert "imported" not in proc.stderr, proc.stderr
    assert proc.returncode == code, proc.stderr
