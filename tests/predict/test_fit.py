"""The fitting pipelines as library calls: where `fit_latency` keeps its predictor and records, what it measures and
reports, and the settings it refuses before measuring; `fit_accuracy` refuses too few samples and batches below one
before loading anything. (The commands end to end: tests/cli/test_latency_cmd.py and tests/predict/test_fit_cmd.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofakit.errors import ConfigError
from ofakit.latency.devices import get_device
from ofakit.latency.measure import MeasuredGroup
from ofakit.latency.table import find_table
from ofakit.predict.fit import AccuracyFitConfig, LatencyFitConfig, fit_accuracy, fit_latency, latency_fit_paths
from ofakit.space import get_space

SPACE = "ofa-mbv3-cifar"


def test_paths_default_to_the_tables_folder_with_records_beside_the_predictor(tmp_path):
    assert latency_fit_paths("cpu-ort", SPACE, LatencyFitConfig()) == (
        Path("latency_tables/cpu-ort_ofa-mbv3-cifar.predictor.json"),
        Path("latency_tables/cpu-ort_ofa-mbv3-cifar.predictor.records.jsonl"))
    out = tmp_path / "p.json"
    assert latency_fit_paths("cpu-ort", SPACE, LatencyFitConfig(out=out)) == (out, tmp_path / "p.records.jsonl")
    assert latency_fit_paths("cpu-ort", SPACE, LatencyFitConfig(out=out, records=tmp_path / "r.jsonl"))[1] == \
        tmp_path / "r.jsonl"


@pytest.fixture
def measured(monkeypatch) -> list:
    """measure_groups replaced: every subnet takes 1.2x its LUT sum; returns the subnets measured."""
    from ofakit.latency import measure
    from ofakit.latency.estimate import LutEstimator

    seen: list = []

    def fake(device, space, table, archs, cfg):
        lut = LutEstimator(table, space)
        for start in range(0, len(archs), cfg.group):
            chunk = list(archs[start:start + cfg.group])
            seen.extend(chunk)
            ms = list(1.2 * lut.estimate_batch(chunk))
            yield MeasuredGroup(chunk, (ms, ms), (table.reference_ms,) * 2)

    monkeypatch.setattr(measure, "measure_groups", fake)
    return seen


def fit(tmp_path: Path, **settings) -> tuple:
    calls: list = []
    cfg = LatencyFitConfig(out=tmp_path / "p.json", **settings)
    predictor = fit_latency(get_device("cpu-ort"), get_space(SPACE), find_table("cpu-ort", SPACE), cfg,
                            on_group=lambda done, n: calls.append((done, n)))
    return predictor, calls


def test_fit_measures_in_groups_and_stores_the_predictor(tmp_path, measured):
    predictor, calls = fit(tmp_path, samples=45, resolutions=(28, 32), seed=3)
    assert len(measured) == 45 and {a.resolution for a in measured} == {28, 32}
    assert calls == [(20, 45), (40, 45), (45, 45)]  # groups of 20
    assert predictor.path == tmp_path / "p.json" and predictor.meta["records"] == 45
    assert predictor.meta["records_file"] == "p.records.jsonl"
    assert predictor.meta["source"] == f"ofakit latency fit --device cpu-ort --space {SPACE} --samples 45 --seed 3"
    stored = json.loads((tmp_path / "p.json").read_text())
    assert stored["meta"]["kind"] == predictor.kind
    lines = (tmp_path / "p.records.jsonl").read_text().splitlines()
    assert len(lines) == 45 and all(json.loads(line)["device"] == "cpu-ort" for line in lines)
    measured_ms = np.array([json.loads(line)["measured_ms"] for line in lines[:5]])
    np.testing.assert_allclose(predictor.estimate_batch(measured[:5]), measured_ms, rtol=0.02)  # it learned the 1.2x


def test_a_second_fit_measures_only_the_new_subnets(tmp_path, measured):
    fit(tmp_path, samples=10)
    measured.clear()
    predictor, calls = fit(tmp_path, samples=12)  # the same seed draws the same first 10 subnets
    assert len(measured) == 2 and calls == [(12, 12)] and predictor.meta["records"] == 12


def test_uniform_subnets_already_drawn_as_another_arch_are_measured_once(tmp_path, measured, monkeypatch):
    """A random subnet that builds a uniform subnet's network (equal but for the kernels of skipped slots) holds its
    record: measured twice, the one network would sit on both sides of the predictor's held-out split."""
    import dataclasses

    from ofakit.predict import fit as fitting
    from ofakit.predict.records import uniform_grid

    space = get_space(SPACE)
    uniform = uniform_grid(space, (32,))
    shallow = next(a for a in uniform if a.depths[0] < 4)  # slot 3 of stage 0 is skipped
    twin = dataclasses.replace(shallow, kernel_sizes=(shallow.kernel_sizes[0],) * 3 + (7,) + shallow.kernel_sizes[4:])
    assert twin != shallow and space.key(twin) == space.key(shallow)
    draw = fitting.sample_archs
    monkeypatch.setattr(fitting, "sample_archs", lambda *a, **k: [twin, *draw(*a, **k)[1:]])
    fit(tmp_path, samples=10, resolutions=(32,), uniform=True)
    assert twin in measured and shallow not in measured
    assert len({space.key(a) for a in measured}) == len(measured) == 10 + len(uniform) - 1


@pytest.mark.parametrize("settings, message", [
    ({"samples": 7}, "--samples must be at least 8, got 7"),
    ({"reps": 0}, "--reps must be >= 1, got 0"),
    ({"calls": -2}, "--calls must be >= 1, got -2"),
    ({"resolutions": (40,)}, r"has no entries at resolution\(s\) 40 \(it has: 24, 28, 32\)"),
])
def test_settings_are_refused_before_anything_is_measured(tmp_path, measured, settings, message):
    with pytest.raises(ConfigError, match=message):
        fit(tmp_path, **settings)
    assert measured == [] and not list(tmp_path.iterdir())


def test_accuracy_fit_refuses_too_few_samples_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="--samples must be at least 12, got 11"):
        fit_accuracy(tmp_path / "no-bundle", AccuracyFitConfig(data="digits", samples=11))


@pytest.mark.parametrize("settings, message", [
    ({"val_batches": 0}, r"--val-batches must be at least 1 \(or left out for the whole val split\), got 0"),
    ({"val_batches": -2}, r"--val-batches must be at least 1 .*got -2"),
    ({"calibration_batches": 0}, r"--calibration-batches must be at least 1, got 0"),
])
def test_accuracy_fit_refuses_batches_below_one_in_its_config(settings, message):
    """No subnet scored on 0 images (top-1 0.0 for all) and no BN statistics from 0 batches: the config refuses
    them when it is made, before any bundle is read."""
    with pytest.raises(ConfigError, match=message):
        AccuracyFitConfig(data="digits", **settings)
    AccuracyFitConfig(data="digits", val_batches=None, calibration_batches=1)  # the whole val split; 1 batch


def test_accuracy_fit_counts_a_network_recorded_under_other_skipped_slots(tmp_path, monkeypatch):
    """A record of an arch that builds the same network as one the fit draws (other values in the slots its depths
    skip, e.g. from an older ofakit) counts for it: resuming evaluates only the others, once per network, and fits
    on the record's top-1 (evaluation and fit stubbed: what is evaluated and fitted on is the point)."""
    import random
    from dataclasses import replace

    import torch

    from ofakit.bundle import save_bundle
    from ofakit.predict import accuracy
    from ofakit.predict.accuracy import AccuracyPredictor
    from ofakit.predict.records import RECORDS, append_record, read_records, spread_over_macs
    from ofakit.supernet import build_supernet
    from ofakit.train import evaluate

    evaluated, fitted = [], []
    monkeypatch.setattr(evaluate, "evaluate_subnet", lambda net, arch, *a: evaluated.append(arch) or 0.5)

    def fit(space, archs, top1, **kwargs):
        fitted.append(dict(zip(archs, top1)))
        return AccuracyPredictor(space.name, "mlp", {"w0": np.zeros((1, len(space.feature_names)))},
                                 meta={"heldout": {}})

    monkeypatch.setattr(accuracy, "fit_accuracy_predictor", fit)
    torch.manual_seed(0)
    save_bundle(tmp_path, build_supernet("tiny", num_classes=10))
    space = get_space("tiny")
    drawn = spread_over_macs(space, 12, random.Random(0))  # what the fit below draws
    arch = next(a for a in drawn if a.depths[0] == 1)  # slot 1 is skipped: its kernel does not matter
    other = replace(arch, kernel_sizes=(arch.kernel_sizes[0], 3 if arch.kernel_sizes[1] != 3 else 5,
                                        *arch.kernel_sizes[2:]))
    assert other != arch and space.key(other) == space.key(arch)
    evaluation = {"data": "digits", "val_images": 256, "calibration_images": 64, "seed": 0}
    append_record(tmp_path / RECORDS, other, 0.123, evaluation)
    fit_accuracy(tmp_path, AccuracyFitConfig(data="digits", samples=12, val_batches=1, calibration_batches=1,
                                             uniform=True))
    keys = [space.key(a) for a in evaluated]
    assert space.key(arch) not in keys and len(set(keys)) == len(keys)  # once per network, the recorded one never
    assert fitted[0][arch] == 0.123 and len({space.key(a) for a in fitted[0]}) == len(fitted[0])
    assert len(read_records(tmp_path / RECORDS)) == len(fitted[0]) == len(evaluated) + 1
