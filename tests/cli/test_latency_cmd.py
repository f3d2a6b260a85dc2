"""`ofakit latency fit` and `--latency-model lut|predictor|auto` on `arch info`, `specialize` and `latency validate`:
measurement is replaced by synthetic timings (nothing is timed here); mistakes are one line and exit code 2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ofakit.latency.table import find_table
from ofakit.latency.measure import MeasuredGroup
from ofakit.space import get_space

ROOT = Path(__file__).resolve().parents[2]
SPACE = "ofa-mbv3-cifar"
NO_PREDICTOR = ["--device", "note10", "--space", "ofa-mbv3-w1.2"]  # shipped table, no predictor


class FakeMeasure:
    """Stands in for `measure_groups`: 1.3x the LUT sum plus 0.05 ms per block at resolution 32, reference at the
    table's level; `kill_after` subnets, it raises KeyboardInterrupt as a Ctrl-C would."""

    def __init__(self) -> None:
        self.measured: list = []
        self.kill_after: int | None = None

    def __call__(self, device, space, table, archs, cfg):
        from ofakit.latency.estimate import LutEstimator

        lut = LutEstimator(table, space)
        for start in range(0, len(archs), cfg.group):
            if self.kill_after is not None and len(self.measured) >= self.kill_after:
                raise KeyboardInterrupt
            chunk = list(archs[start:start + cfg.group])
            self.measured.extend(chunk)
            blocks = np.array([sum(a.depths) * (a.resolution == 32) for a in chunk])
            ms = list(1.3 * lut.estimate_batch(chunk) + 0.05 * blocks)
            yield MeasuredGroup(chunk, (ms, ms), (table.reference_ms,) * 2)


@pytest.fixture
def fake(monkeypatch) -> FakeMeasure:
    from ofakit.latency import measure, validate

    fake = FakeMeasure()
    monkeypatch.setattr(measure, "measure_groups", fake)  # latency fit
    monkeypatch.setattr(validate, "measure_groups", fake)  # latency validate
    return fake


@pytest.fixture
def tables(tmp_path, monkeypatch) -> Path:
    """A table folder searched first, holding a copy of the cpu-ort table of ofa-mbv3-cifar."""
    folder = tmp_path / "tables"
    folder.mkdir()
    shutil.copy(find_table("cpu-ort", SPACE).path, folder)
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(folder))
    return folder


def fit(cli, tables: Path, *extra: object):
    return cli("latency", "fit", "--device", "cpu-ort", "--space", SPACE, "--samples", "30",
               "--out", tables / "cpu-ort_ofa-mbv3-cifar.predictor.json", *extra)


def test_fit_resumes_after_an_interruption(cli, tables, fake):
    fake.kill_after = 20
    assert fit(cli, tables).code == 130
    records = tables / "cpu-ort_ofa-mbv3-cifar.predictor.records.jsonl"
    assert len(records.read_text().splitlines()) == 20 and not (tables / "cpu-ort_ofa-mbv3-cifar.predictor.json").exists()
    first = list(fake.measured)
    fake.kill_after, fake.measured = None, []
    result = fit(cli, tables)
    assert result.code == 0, result.err
    assert len(fake.measured) == 10 and not set(fake.measured) & set(first)  # only what the killed run had not done
    assert len(records.read_text().splitlines()) == 30
    assert "30/30 subnets measured" in result.err and "(chosen)" in result.out
    data = json.loads((tables / "cpu-ort_ofa-mbv3-cifar.predictor.json").read_text())
    assert data["meta"]["records"] == 30 and data["meta"]["source"].startswith("ofakit latency fit --device cpu-ort")
    assert data["meta"]["cv"][data["meta"]["kind"]]["mape_pct"] < data["meta"]["cv"]["lut"]["mape_pct"]
    assert sorted(p.name for p in tables.iterdir()) == ["cpu-ort_ofa-mbv3-cifar.json",
                                                       "cpu-ort_ofa-mbv3-cifar.predictor.json",
                                                       "cpu-ort_ofa-mbv3-cifar.predictor.records.jsonl"]


def test_fit_uniform_adds_the_corners_of_the_space(cli, tables, fake):
    from ofakit.arch import ArchConfig
    from ofakit.predict.records import uniform_grid

    result = fit(cli, tables, "--samples", "10", "--uniform")
    assert result.code == 0, result.err
    grid = uniform_grid(get_space(SPACE), (24, 28, 32))
    measured = {ArchConfig.from_dict(json.loads(line)["arch"]) for line in
                (tables / "cpu-ort_ofa-mbv3-cifar.predictor.records.jsonl").read_text().splitlines()}
    assert set(grid) <= measured and len(measured) == len(set(fake.measured)) > len(grid)
    meta = json.loads((tables / "cpu-ort_ofa-mbv3-cifar.predictor.json").read_text())["meta"]
    assert meta["records"] == len(measured) and meta["source"].endswith("--uniform")


def test_fit_mistakes(cli, tables, fake):
    cli("latency", "fit", "--device", "cpu-ort", "--space", SPACE, "--samples", "3").assert_user_error(
        "--samples must be at least 8, got 3")
    cli("latency", "fit", "--device", "cpu-ort", "--space", SPACE, "--resolutions", "40").assert_user_error(
        "has no entries at resolution(s) 40 (it has: 24, 28, 32)")
    cli("latency", "fit", "--device", "cpu-ort", "--space", SPACE, "--calls", "0").assert_user_error(
        "--calls must be >= 1, got 0")
    cli("latency", "validate", "--device", "cpu-ort", "--space", SPACE, "--reps", "-1").assert_user_error(
        "--reps must be >= 1, got -1")
    assert fake.measured == []


@pytest.fixture
def fitted(cli, tables, fake) -> Path:
    assert fit(cli, tables).code == 0
    return tables


def arch_file(tmp_path: Path, space: str = SPACE) -> Path:
    path = tmp_path / "arch.json"
    path.write_text(get_space(space).largest().to_json())
    return path


def test_arch_info_with_each_latency_model(cli, fitted, tmp_path):
    from ofakit.predict.latency import load_predictor

    path = arch_file(tmp_path)
    info = {}
    for model in ("lut", "predictor", "auto"):
        result = cli("arch", "info", path, "--device", "cpu-ort", "--latency-model", model, "--json", "--no-drift")
        assert result.code == 0, result.err
        info[model] = json.loads(result.out)
    assert info["lut"]["latency_estimator"] == "lut" and "latency_predictor" not in info["lut"]
    assert info["auto"] == info["predictor"] and info["predictor"]["latency_estimator"] == "predictor"
    assert info["predictor"]["latency_predictor"] == str(fitted / "cpu-ort_ofa-mbv3-cifar.predictor.json")
    expected = load_predictor("cpu-ort", SPACE).estimate(get_space(SPACE).largest())
    assert info["predictor"]["latency_ms"] == round(expected, 4) != info["lut"]["latency_ms"]
    text = cli("arch", "info", path, "--device", "cpu-ort", "--no-drift").out
    assert f"latency     {expected:.2f} ms on cpu-ort (predictor, {fitted}" in text


def test_latency_model_mistakes(cli, tmp_path):
    path = arch_file(tmp_path, "ofa-mbv3-w1.2")
    cli("arch", "info", path, "--device", "note10", "--latency-model", "predictor").assert_user_error(
        "no latency predictor for device 'note10' and space 'ofa-mbv3-w1.2'",
        "fit one: ofakit latency fit --device note10 --space ofa-mbv3-w1.2 --samples 40")
    cli("arch", "info", path, "--device", "note10", "--latency-model", "predicter").assert_user_error(
        "unknown latency model 'predicter'; known: adapted, auto, calibrated, lut, op-model, predictor, structural.",
        "Did you mean 'predictor'?")
    cli("arch", "info", path, "--latency-model", "lut").assert_user_error("--latency-model needs --device")
    auto = cli("arch", "info", path, "--device", "note10", "--json")  # auto without a predictor: the LUT sum
    assert json.loads(auto.out)["latency_estimator"] == "lut"
    cli("latency", "validate", *NO_PREDICTOR, "--latency-model", "predictor").assert_user_error(
        "no latency predictor for device 'note10'", "ofakit latency fit --device note10")
    cli("latency", "validate", *NO_PREDICTOR, "--latency-model", "sum").assert_user_error(
        "unknown latency model 'sum'; known: adapted, auto, calibrated, lut, op-model, predictor, structural")
    cli("specialize", "--device", "cpu-ort", "--latency", "1ms", "--bundle", "ofa-mbv3-cifar10",
        "--latency-model", "lutt").assert_user_error("unknown latency model 'lutt'", "Did you mean 'lut'?")


def test_specialize_searches_with_the_predictor(cli, fitted, tmp_path):
    from ofakit.arch import ArchConfig
    from ofakit.predict.latency import load_predictor

    result = cli("specialize", "--device", "cpu-ort", "--latency", "0.8ms", "--budget", "300", "--json",
                 "--latency-model", "predictor", "--pareto", "--no-drift")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["latency_estimator"] == "predictor" and report["latency_ms"] <= 0.8
    predictor = load_predictor("cpu-ort", SPACE)
    assert report["latency_ms"] == round(predictor.estimate(ArchConfig.from_dict(report["arch"])), 4)
    assert max(report["pareto"]["latency_ms"]) <= 0.8
    lut = json.loads(cli("specialize", "--device", "cpu-ort", "--latency", "0.8ms", "--budget", "300", "--json",
                         "--latency-model", "lut").out)
    assert lut["latency_estimator"] == "lut"


def test_arch_info_with_a_predictor_imports_neither_torch_nor_sklearn(fitted, tmp_path):
    """--no-drift needs neither torch nor ONNX Runtime; the default drift correction needs torch only the first time
    on a machine (to export the reference model into the cache), then ONNX Runtime alone."""
    argv = ["arch", "info", str(arch_file(tmp_path)), "--device", "cpu-ort", "--latency-model", "predictor"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OFAKIT_TABLES_PATH": str(fitted),
           "OFAKIT_CACHE": str(tmp_path / "cache")}

    def imported(extra: list[str]) -> list[str]:
        script = (f"import sys; from ofakit.cli.main import main; code = main({argv + extra!r}); "
                  f"print(sorted(m for m in ('torch', 'onnxruntime', 'sklearn') if m in sys.modules)); sys.exit(code)")
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env=env)
        assert proc.returncode == 0, proc.stderr
        assert "(predictor" in proc.stdout
        return json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))

    assert imported(["--no-drift"]) == []
    assert "torch" in imported([])  # the first drift measurement exports the reference model
    assert imported([]) == ["onnxruntime"]  # then it comes from the cache
