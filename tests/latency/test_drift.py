"""Drift correction: a table of a local device is another machine's until its reference model is timed here."""
from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest

from ofakit.errors import ConfigError
from ofakit.latency.drift import WARN_FACTOR, drift_for
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.measure import sample_archs
from ofakit.latency.table import TABLES_PATH_ENV, find_table
from ofakit.space import get_space

SPACE = "ofa-mbv3-cifar"


def _copy_table(tmp_path, monkeypatch, edit) -> None:
    """A table folder searched first, holding the shipped cpu-ort table of SPACE as changed by `edit(data)`."""
    folder = tmp_path / "tables"
    folder.mkdir()
    src = find_table("cpu-ort", SPACE).path
    data = json.loads(src.read_text())
    edit(data)
    (folder / src.name).write_text(json.dumps(data))
    monkeypatch.setenv(TABLES_PATH_ENV, str(folder))


def _times(data, factor: float) -> None:
    """As if every number of the table had been measured on a machine `factor` times slower."""
    for section in data["entries"].values():
        for entry in section.values():
            for k in ("mean", "std", "median", "p10", "ref_ms"):
                if entry.get(k) is not None:
                    entry[k] *= factor
    data["meta"]["reference"]["ms"] *= factor
    data["meta"]["call_overhead_ms"] *= factor


def test_off_is_the_tables_own_numbers():
    d = drift_for("cpu-ort", SPACE, mode="off", measure=lambda *_: pytest.fail("must not measure"))
    assert (d.scale, d.how) == (1.0, "off") and "--no-drift" in d.why


def test_auto_measures_a_local_device_and_scales_by_the_reference():
    d = drift_for("cpu-ort", SPACE, measure=lambda table, device: 0.5)
    table = find_table("cpu-ort", SPACE)
    assert d.how == "measured" and d.scale == 0.5
    assert d.table_ms == pytest.approx(table.reference_ms) and d.now_ms == pytest.approx(0.5 * table.reference_ms)
    assert "scaled x0.500" in d.why and "ms here now" in d.why
    assert "2.0x faster" in d.hint and f"ofakit profile --device cpu-ort --space {SPACE}" in d.hint
    close = drift_for("cpu-ort", SPACE, measure=lambda *_: 1.0 + (WARN_FACTOR - 1) / 2)
    assert close.hint is None or "CPU is" in close.hint  # only a different CPU model would be named


def test_devices_that_do_not_run_here_get_no_correction_and_say_why():
    d = drift_for("pixel7-adb", "ofa-mbv3-w1.0", measure=lambda *_: pytest.fail("must not measure"))
    assert (d.scale, d.how) == (1.0, "none") and "reached over adb" in d.why and "--drift" in d.why
    d = drift_for("note10", "ofa-mbv3-w1.2", measure=lambda *_: pytest.fail("must not measure"))
    assert d.how == "none" and "not profiled by ofakit (backend 'tflite')" in d.why


def test_a_runtime_that_cannot_run_here_means_no_correction_in_auto_mode(monkeypatch):
    from ofakit.errors import BackendUnavailableError

    def no_gpu(table, device):
        raise BackendUnavailableError("no CUDA GPU visible to torch")

    d = drift_for("cpu-ort", SPACE, measure=no_gpu)
    assert (d.scale, d.how) == (1.0, "none") and "no CUDA GPU" in d.why
    with pytest.raises(BackendUnavailableError):
        drift_for("cpu-ort", SPACE, mode="on", measure=no_gpu)


def test_a_table_without_a_reference_cannot_be_corrected(tmp_path, monkeypatch):
    _copy_table(tmp_path, monkeypatch, lambda data: data["meta"].pop("reference"))
    d = drift_for("cpu-ort", SPACE, measure=lambda *_: pytest.fail("must not measure"))
    assert d.how == "none" and "has no reference measurement" in d.why
    with pytest.raises(ConfigError, match=r"--drift: table .* has no reference measurement .*; to make one with a "
                                          rf"reference, run: ofakit profile --device cpu-ort --space {SPACE}"):
        drift_for("cpu-ort", SPACE, mode="on")
    with pytest.raises(ConfigError, match="unknown drift mode 'sometimes'; known: auto, on, off"):
        drift_for("cpu-ort", SPACE, mode="sometimes")


def test_drift_on_a_model_without_a_table_says_it_applies_to_tables_only():
    """v100's latency model is fitted on measured subnets (no table): --drift is refused for what it is, not with
    an instruction to profile."""
    with pytest.raises(ConfigError, match=r"^--drift applies only to table-based \(lut\) latency models: the latency "
                                          r"model of device 'v100-b1' for space 'ofa-mbv3-w1.2' has no latency table"):
        drift_for("v100", "ofa-mbv3-w1.2", mode="on", table_free=True, measure=lambda *_: pytest.fail("measured"))
    d = drift_for("v100", "ofa-mbv3-w1.2", table_free=True)  # auto: no correction, and the report says why
    assert d.how == "none" and "has no table" in d.why


def test_a_damaged_cached_reference_model_is_exported_again(tmp_path, monkeypatch):
    """A reference model cut short in the cache folder (a full disk, a killed copy) is removed and exported again
    once, instead of breaking the correction for good (the tiny space's reference, for speed)."""
    import onnxruntime

    from ofakit.latency.backends import backend_for
    from ofakit.latency.devices import get_device
    from ofakit.latency.drift import _reference_onnx_runner, reference_cache_path

    monkeypatch.setenv("OFAKIT_CACHE", str(tmp_path / "cache"))
    space = get_space("tiny")
    arch = space.reference_arch()
    shape = (1, 3, arch.resolution, arch.resolution)
    path = reference_cache_path(space, arch, shape)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x08\x08\x12\x07pytorch")  # the first bytes of a model, and no more
    runner = _reference_onnx_runner(backend_for(get_device("cpu-ort")), space, arch, shape)
    assert len(runner.time(2)) == 2
    onnxruntime.InferenceSession(path.read_bytes())  # the cache holds a whole model again


def test_the_reference_cache_names_what_the_exported_model_depends_on(monkeypatch):
    """Another ONNX opset, torch or onnxruntime exports another file: an upgrade never reuses the old one."""
    import importlib.metadata

    from ofakit.latency.backends import onnxruntime
    from ofakit.latency.drift import reference_cache_path

    space = get_space(SPACE)
    arch, shape = space.reference_arch(), (1, 3, 32, 32)
    first = reference_cache_path(space, arch, shape)
    assert reference_cache_path(space, arch, shape) == first and first.name.startswith(f"{SPACE}-")
    monkeypatch.setattr(onnxruntime, "OPSET", onnxruntime.OPSET + 1)
    assert reference_cache_path(space, arch, shape) != first
    monkeypatch.undo()
    for package in ("torch", "onnxruntime"):
        real = importlib.metadata.version
        monkeypatch.setattr(importlib.metadata, "version", lambda name, p=package: "0.0" if name == p else real(name))
        assert reference_cache_path(space, arch, shape) != first
        monkeypatch.undo()


def test_a_table_from_a_machine_three_times_slower_is_corrected_to_this_ones(tmp_path, monkeypatch):
    """Real timing: the drift measured against a table whose numbers are all 3x too high undoes the factor; the
    reference model is exported once into the cache folder, and the second measurement needs no torch export."""
    monkeypatch.setenv("OFAKIT_CACHE", str(tmp_path / "cache"))
    archs = sample_archs(get_space(SPACE), (32,), 5, random.Random(0))
    shipped = LutEstimator(find_table("cpu-ort", SPACE)).estimate_batch(archs)
    _copy_table(tmp_path, monkeypatch, lambda data: _times(data, 3.0))
    slow = find_table("cpu-ort", SPACE)
    assert slow.path.parent == tmp_path / "tables"
    raw = LutEstimator(slow).estimate_batch(archs)
    np.testing.assert_allclose(raw / shipped, 3.0, rtol=1e-9)  # uncorrected: the other machine's numbers
    tables = os.environ[TABLES_PATH_ENV]
    ratios = []
    for _ in range(3):  # two timings of one model on a shared machine (CI runs two test workers on two cores) can
        # differ by more than the bounds: a pair that does is timed again. A correction that failed to undo the
        # factor would be ~3x off in every pair.
        monkeypatch.delenv(TABLES_PATH_ENV)
        right = drift_for("cpu-ort", SPACE)  # against the shipped table: this machine's estimates
        monkeypatch.setenv(TABLES_PATH_ENV, tables)
        d = drift_for("cpu-ort", SPACE)  # against the 3x table
        corrected = LutEstimator(slow).estimate_batch(archs, scale=d.scale)
        ratios.append(float(np.median(corrected / (shipped * right.scale))))
        if 0.6 < ratios[-1] < 1.6:
            break
    assert 0.6 < ratios[-1] < 1.6, f"corrected / this machine's estimates, per pair of timings: {ratios}"
    assert d.how == "measured" and f"x{d.scale:.3f}" in d.why
    assert "faster than the table's" in d.hint and "ofakit profile --device cpu-ort" in d.hint
    cached = list((tmp_path / "cache" / "reference-models").glob(f"{SPACE}-*.onnx"))
    assert len(cached) == 1
    from ofakit.latency.backends import onnxruntime

    monkeypatch.setattr(onnxruntime, "to_onnx", lambda *a: pytest.fail("exported again"))
    assert 0.5 < drift_for("cpu-ort", SPACE).scale / d.scale < 2.0
