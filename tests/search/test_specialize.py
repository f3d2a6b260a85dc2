"""`ofakit specialize` on a bundle with a predictor and a device table: limits met, errors explained, no torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ofakit.cli.main import main
from ofakit.predict.accuracy import AccuracyPredictor
from ofakit.search.evolution import EvolutionConfig
from ofakit.space import get_space

REPO = Path(__file__).resolve().parents[2]


def make_bundle(path: Path, space_name: str, *, predictor_space: str | None = None, predictor: bool = True) -> Path:
    """bundle.json and a random MLP predictor: all that specialize reads (weights are not needed to search)."""
    path.mkdir(parents=True, exist_ok=True)
    space = get_space(space_name)
    (path / "bundle.json").write_text(json.dumps({"space": space_name, "num_classes": space.num_classes}))
    if predictor:
        pspace = get_space(predictor_space or space_name)
        rng = np.random.default_rng(0)
        n = len(pspace.feature_names)
        arrays = {"w0": rng.normal(0, 0.1, (32, n)), "b0": np.zeros(32), "w1": rng.normal(0, 0.1, (1, 32)),
                  "b1": np.zeros(1), "offset": np.array([0.7])}
        AccuracyPredictor(pspace.name, "mlp", arrays, meta={"layers": 2}).save(path)
    return path


def run(*argv):
    return main([str(a) for a in argv])


def test_specialize_meets_the_limit_and_writes_files(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2")
    assert run("specialize", "--device", "note10", "--latency", "30ms", "--bundle", bundle, "--budget", "2000",
               "--out", tmp_path / "out", "--json", "--pareto") == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("arch", "predicted_accuracy", "latency_ms", "macs", "params", "device", "evaluations",
                "wall_time_s"):
        assert key in report
    assert report["latency_ms"] <= 30 and report["device"] == "note10"
    from ofakit.arch import ArchConfig

    best = ArchConfig.from_dict(report["arch"])
    assert report["predicted_accuracy"] == pytest.approx(AccuracyPredictor.load(bundle).predict([best])[0], abs=1e-6)
    assert json.loads((tmp_path / "out" / "arch.json").read_text()) == report["arch"]
    front = report["pareto"]
    assert front["latency_ms"] == sorted(front["latency_ms"]) and max(front["latency_ms"]) <= 30
    assert front["predicted_accuracy"] == sorted(front["predicted_accuracy"])
    capsys.readouterr()
    assert run("specialize", "--device", "note10", "--latency", "0.03s", "--bundle", bundle, "--budget", "2000",
               "--json") == 0
    assert json.loads(capsys.readouterr().out)["arch"] == report["arch"]  # same seed, same result


def test_latency_scale_tightens_the_limit_and_drift_is_measured(tmp_path, capsys):
    """The machine runs `scale` times slower than when the table was made: the search holds the scaled estimate to
    the limit, so the table-level estimate of its pick is at most limit / scale; --drift measures that scale."""
    from ofakit.arch import ArchConfig
    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.table import find_table
    from ofakit.search.specialize import SpecializeConfig, specialize

    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-cifar")
    lut = LutEstimator(find_table("cpu-ort", "ofa-mbv3-cifar"))
    plain, _ = specialize(bundle, SpecializeConfig("cpu-ort", latency_ms=0.8, budget=1000))
    slow, report = specialize(bundle, SpecializeConfig("cpu-ort", latency_ms=0.8, budget=1000, latency_scale=1.5))
    assert lut.estimate(slow.best) <= 0.8 / 1.5 < lut.estimate(plain.best) <= 0.8
    assert report["latency_drift_scale"] == 1.5 and report["latency_ms"] == pytest.approx(
        1.5 * lut.estimate(slow.best), abs=1e-4)
    assert run("specialize", "--device", "cpu-ort", "--latency", "0.8ms", "--bundle", bundle, "--budget", "500",
               "--latency-model", "lut", "--drift", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    scale = report["latency_drift_scale"]
    assert 0.2 < scale < 5 and report["latency_ms"] <= 0.8
    assert report["latency_ms"] == pytest.approx(scale * lut.estimate(ArchConfig.from_dict(report["arch"])), abs=1e-3)


def test_the_cli_corrects_drift_by_default_and_no_drift_keeps_the_tables_numbers(tmp_path, capsys, monkeypatch):
    """Default: the reference is timed (here: a stand-in 2x faster machine) and the report says so in one line
    with the re-profile hint; --no-drift gives the table's own numbers, the same every run."""
    from ofakit.latency import drift

    monkeypatch.setattr(drift, "_measure_reference", lambda table, device: 0.5)
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-cifar")
    argv = ["specialize", "--device", "cpu-ort", "--latency", "0.5ms", "--bundle", bundle, "--budget", "500", "--json"]
    assert run(*argv) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["latency_drift"]["how"] == "measured" and report["latency_drift_scale"] == 0.5
    assert "scaled x0.500" in out.err and "2.0x faster" in out.err and "ofakit profile --device cpu-ort" in out.err
    assert run(*argv, "--no-drift") == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["latency_drift"]["how"] == "off" and "latency_drift_scale" not in plain
    assert plain["latency_ms"] <= 0.5 < report["latency_ms"] / 0.5  # the drift let a bigger subnet in


@pytest.mark.parametrize("argv, fragments", [
    (["--device", "note1O", "--latency", "30ms"], ["unknown device 'note1O'", "Did you mean 'note10'"]),
    (["--device", "note10", "--latency", "1ms"], ["smallest reached", "raise the limit"]),
    (["--device", "note10", "--latency", "thirty"], ["cannot read latency 'thirty'"]),
    (["--device", "note10", "--macs", "3 hundred"], ["cannot read MACs"]),
    (["--device", "note10", "--latency", "30ms", "--algorithm", "evolutoin"],
     ["unknown search algorithm 'evolutoin'", "Did you mean 'evolution'"]),
    (["--device", "note10", "--latency", "30ms", "--seed", "-1"], ["--seed must be 0 or more", "got -1"]),
])
def test_user_mistakes(tmp_path, capsys, argv, fragments):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2")
    assert run("specialize", *argv, "--bundle", bundle, "--budget", "500") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ofakit: error:") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_a_phone_whose_table_is_for_another_space_says_which_bundles_serve_it(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-cifar")
    assert run("specialize", "--device", "note10", "--latency", "30ms", "--bundle", bundle) == 2
    err = capsys.readouterr().err
    assert "device 'note10' has latency tables only for ofa-mbv3-w1.2" in err
    assert "ofakit import-ofa --checkpoint CHECKPOINT --predictor acc_predictor.pth --space ofa-mbv3-w1.2" in err
    assert "devices with a table for 'ofa-mbv3-cifar': cpu-ort" in err


def test_bundle_without_predictor_says_how_to_fit_one(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2", predictor=False)
    assert run("specialize", "--device", "note10", "--latency", "30ms", "--bundle", bundle) == 2
    assert "ofakit predictor fit --bundle" in capsys.readouterr().err


def test_predictor_of_another_space(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2", predictor_space="ofa-mbv3-w1.0")
    assert run("specialize", "--device", "note10", "--latency", "30ms", "--bundle", bundle) == 2
    assert "predictor in" in capsys.readouterr().err


def test_specialize_imports_neither_torch_nor_numpy_random(tmp_path):
    """torch takes seconds to import; numpy.random ~10 ms, a third of a cold call's set-up (ofakit.rng draws)."""
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.2")
    code = ("import sys; from ofakit.cli.main import main; "
            f"rc = main(['specialize', '--device', 'note10', '--latency', '30ms', '--bundle', {str(bundle)!r}, "
            "'--budget', '300', '--json']); assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'numpy.random' not in sys.modules, 'numpy.random imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_specialize_with_an_imported_mit_predictor_only_proposes_encodable_resolutions(tmp_path, capsys):
    fixture = REPO / "tests" / "fixtures" / "ofa" / "acc_predictor_tutorial.pth"
    assert run("import-ofa", "--predictor", fixture, "--space", "ofa-mbv3-w1.2", "--out", tmp_path / "b") == 0
    capsys.readouterr()
    assert run("specialize", "--device", "note10", "--latency", "30ms", "--bundle", tmp_path / "b", "--budget", "600",
               "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arch"]["resolution"] in (160, 176, 192, 208, 224) and report["latency_ms"] <= 30


def test_a_table_of_a_few_resolutions_restricts_the_search_to_them(tmp_path, capsys):
    """cpu-ort's ofa-mbv3-w1.0 table has 4 of the space's 25 resolutions: the search proposes only those (with the
    table's sum and with the learned predictor over it) and says so; the report holds them."""
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-w1.0")
    for model in ("lut", "auto"):
        assert run("specialize", "--device", "cpu-ort", "--latency", "5ms", "--bundle", bundle, "--budget", "300",
                   "--no-drift", "--latency-model", model, "--json") == 0
        out = capsys.readouterr()
        report = json.loads(out.out)
        assert report["arch"]["resolution"] in (128, 160, 192, 224) and report["latency_ms"] <= 5
        assert report["searched_resolutions"] == [128, 160, 192, 224] and len(report["notes"]) == 1
        assert (f"note: searched resolutions 128, 160, 192, 224 only (of the space's 25): the latency model "
                f"({report['latency_estimator']}) of cpu-ort estimates no others") in out.err


def mit_bundle(path: Path, resolutions: list[int]) -> Path:
    """A bundle of ofa-mbv3-w1.0 whose predictor has MIT's ofa.nas layout with `resolutions` (random weights)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "bundle.json").write_text(json.dumps({"space": "ofa-mbv3-w1.0", "num_classes": 1000}))
    rng = np.random.default_rng(0)
    arrays = {"w0": rng.normal(0, 0.1, (8, 120 + len(resolutions))), "b0": np.zeros(8),
              "w1": rng.normal(0, 0.1, (1, 8)), "offset": np.array([0.7])}
    AccuracyPredictor("ofa-mbv3-w1.0", "mlp", arrays, encoding="ofa-nas",
                      meta={"layers": 2, "mit_resolutions": resolutions}).save(path)
    return path


def test_the_search_keeps_the_resolutions_both_predictor_and_latency_model_cover(tmp_path, capsys):
    argv = ["specialize", "--device", "cpu-ort", "--latency", "5ms", "--budget", "300", "--no-drift",
            "--latency-model", "lut", "--json"]
    assert run(*argv, "--bundle", mit_bundle(tmp_path / "both", [160, 176, 192])) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["searched_resolutions"] == [160, 192] and report["arch"]["resolution"] in (160, 192)
    assert ("searched resolutions 160, 192 only (of the space's 25): the accuracy predictor encodes 160, 176, 192 "
            "and the latency model (lut) of cpu-ort estimates 128, 160, 192, 224") in out.err
    assert run(*argv, "--bundle", mit_bundle(tmp_path / "none", [132, 136])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ofakit: error: no resolution of space 'ofa-mbv3-w1.0' is both "
                                                   "encoded by the accuracy predictor (132, 136) and estimated by the "
                                                   "latency model (lut) of cpu-ort (128, 160, 192, 224)")
    assert "ofakit profile --device cpu-ort --space ofa-mbv3-w1.0 --resolutions 136" in err


def test_out_removes_the_files_of_an_earlier_run_that_this_one_does_not_write(tmp_path, capsys):
    """A single budget with --pareto, then two budgets, then one again into the same folder: each time the folder
    holds what report.json describes; the user's own files stay, and a run that fails changes nothing."""
    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-cifar")
    out = tmp_path / "out"
    argv = ["specialize", "--device", "cpu-ort", "--bundle", bundle, "--budget", "300", "--no-drift",
            "--latency-model", "lut", "--out", out]

    def names():
        return sorted(p.name for p in out.iterdir())

    assert run(*argv, "--latency", "0.8ms", "--pareto") == 0
    (out / "notes.txt").write_text("mine")
    (out / "arch-final.json").write_text("{}")  # not a name ofakit gives
    assert names() == ["arch-final.json", "arch.json", "notes.txt", "pareto.png", "report.json"]
    capsys.readouterr()
    assert run(*argv, "--latency", "0.6ms,0.8ms") == 0
    assert names() == ["arch-0.6ms.json", "arch-0.8ms.json", "arch-final.json", "notes.txt", "report.json"]
    assert f"removed arch.json, pareto.png of an earlier run from {out}" in capsys.readouterr().err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run(*argv, "--latency", "0.01ms") == 2  # infeasible: nothing written, nothing removed
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert run(*argv, "--latency", "0.8ms") == 0
    assert names() == ["arch-final.json", "arch.json", "notes.txt", "report.json"]
    assert json.loads((out / "arch.json").read_text()) == json.loads((out / "report.json").read_text())["arch"]


@pytest.mark.parametrize("algorithm, budget", [("evolution", 30), ("evolution", 100), ("evolution", 300),
                                               ("evolution", 999), ("aging", 20), ("aging", 250)])
def test_a_small_budget_is_honoured(tmp_path, algorithm, budget):
    """Below 10 populations, evolution and aging shrink the population so that their first draws and generations
    fit: at most `budget` archs are scored (evolution scored 300 for --budget 100 before)."""
    from ofakit.search.specialize import SpecializeConfig, specialize

    bundle = make_bundle(tmp_path / "b", "ofa-mbv3-cifar")
    cfg = SpecializeConfig("cpu-ort", latency_ms=0.8, budget=budget, algorithm=algorithm)
    _, report = specialize(bundle, cfg)
    assert 0.6 * budget <= report["evaluations"] <= budget and report["latency_ms"] <= 0.8


def test_the_default_budget_keeps_ofas_population_and_too_small_a_budget_is_refused(tmp_path):
    from ofakit.errors import ConfigError
    from ofakit.search.specialize import SpecializeConfig, sized_for_budget, specialize

    assert sized_for_budget("evolution", 5000, 100) == EvolutionConfig(population=100, generations=50)
    assert sized_for_budget("evolution", 1000, 100) == EvolutionConfig(population=100, generations=10)
    assert sized_for_budget("rl", 100, 100) == EvolutionConfig(population=100, generations=1)  # its own batches
    with pytest.raises(ConfigError, match=r"--budget 29 is too small for --algorithm evolution: .* score 30; give "
                                          r"--budget 30 or more, or --algorithm random"):
        specialize(make_bundle(tmp_path / "b", "ofa-mbv3-cifar"), SpecializeConfig("cpu-ort", latency_ms=0.8,
                                                                                  budget=29))
