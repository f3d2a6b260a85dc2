"""Where each latency estimate of a device comes from (`ofakit devices`): a model file that cannot be read is listed
as unreadable with the loader's one-line error naming it, and the device's other models are still listed."""
from __future__ import annotations

import json

import pytest

from ofakit.latency.table import TABLES_PATH_ENV, find_table
from ofakit.predict.provenance import UNREADABLE, device_models

PREDICTOR = {"format": "ofakit-latency-predictor", "version": 1,
             "meta": {"device": "cpu-ort", "space": "ofa-mbv3-cifar", "table": {}}, "model": {"kind": "linear",
                                                                                             "arrays": {}}}
ADAPTED = {"format": "ofakit-adapted-latency", "version": 1, "meta": {"space": "ofa-mbv3-w1.2", "sources": []},
           "model": {"coef": [], "intercept": 0.0}}


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """A table folder searched first, holding a copy of cpu-ort's table of ofa-mbv3-cifar."""
    table = find_table("cpu-ort", "ofa-mbv3-cifar").path
    (tmp_path / table.name).write_bytes(table.read_bytes())
    monkeypatch.setenv(TABLES_PATH_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(("text", "fragment"), [
    ("garbage", "not an ofakit latency predictor (not JSON: Expecting value"),
    ('{"not": "a predictor"}', "not an ofakit latency predictor (expected \"format\""),
    (json.dumps({**PREDICTOR, "meta": {**PREDICTOR["meta"], "cv": [1]}}), "meta: cv: expected a mapping"),
    (json.dumps({**PREDICTOR, "meta": {"space": "ofa-mbv3-cifar"}}), "meta: missing key(s) 'device', 'table'"),
])
def test_a_malformed_predictor_is_listed_as_unreadable(tables, text, fragment):
    path = tables / "cpu-ort_ofa-mbv3-cifar.predictor.json"
    path.write_text(text)
    models = device_models("cpu-ort")
    [bad] = [m for m in models if m["kind"] == UNREADABLE]
    assert bad["file"] == path.name and bad["spaces"] == ["ofa-mbv3-cifar"]
    assert bad["error"].startswith(f"{path}: ") and fragment in bad["error"]
    kinds = [m["kind"] for m in models]
    assert kinds.count("measured table") == 2 and kinds.count("learned predictor over the table") == 1


@pytest.mark.parametrize(("data", "fragment"), [
    ({"meta": {}}, "not an ofakit adapted latency model (expected \"format\""),
    (ADAPTED, "malformed adapted latency model (meta needs device and space names, a records count, a cv object "
              "and a list of sources naming their device; wrong: device, records, cv)"),
    ({**ADAPTED, "meta": {**ADAPTED["meta"], "sources": ["v100-b32"]}}, "wrong: device, records, cv, sources"),
])
def test_a_malformed_adapted_model_is_listed_as_unreadable(tables, data, fragment):
    path = tables / "cpu-ort.adapted.json"
    path.write_text(json.dumps(data))
    models = device_models("cpu-ort")
    [bad] = [m for m in models if m["kind"] == UNREADABLE]
    assert bad["file"] == path.name and bad["error"].startswith(f"{path}: ") and fragment in bad["error"]
    assert [m["kind"] for m in models].count("measured table") == 2
