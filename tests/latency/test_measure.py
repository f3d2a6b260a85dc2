"""The one reader of measured-latency records (latency fit's records, a user's own stopwatch)."""
from __future__ import annotations

import json

import pytest

from ofakit.errors import ConfigError
from ofakit.latency.measure import LatencyRecord, read_latency_records, read_measured
from ofakit.space import get_space

SPACE = "tiny"


def _write(path, *lines) -> None:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def test_records_round_trip_and_the_last_of_an_arch_wins(tmp_path):
    a, b = get_space(SPACE).largest(), get_space(SPACE).smallest()
    path = tmp_path / "r.jsonl"
    _write(path, LatencyRecord(a, 2.0, 1.0).to_dict("cpu-ort"), {"arch": b.to_dict(), "measured_ms": 1.5},
           LatencyRecord(a, 2.5, 1.1).to_dict("cpu-ort"), '{"arch": {"space": "ti')  # a torn last line
    records = read_measured(path, space=SPACE)
    assert records == [LatencyRecord(a, 2.5, 1.1), LatencyRecord(b, 1.5, None)]
    assert read_latency_records(path, "cpu-ort", SPACE)[a].measured_ms == 2.5
    assert read_measured(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize("line, fragment", [
    ({"arch": {"space": SPACE}, "measured_ms": 1.0}, "ArchConfig is missing key(s) 'resolution'"),
    ({"arch": "x", "measured_ms": 1.0}, "an ArchConfig must be a JSON object"),
    ({"measured_ms": 1.0}, "missing key(s) 'arch'"),
    ({"ARCH": {}, "measured_ms": 1.0}, "unknown key(s) 'ARCH'; allowed: arch, measured_ms"),
    ("LARGEST", "measured_ms: expected a number, got 'x'"),
    ("NEGATIVE", "measured_ms must be a positive number of milliseconds, got -1"),
    ([1, 2], "expected a mapping, got a list"),
])
def test_a_wrong_line_is_one_error_naming_the_file_and_line(tmp_path, line, fragment):
    arch = get_space(SPACE).largest().to_dict()
    line = {"LARGEST": {"arch": arch, "measured_ms": "x"}, "NEGATIVE": {"arch": arch, "measured_ms": -1}}.get(
        line, line) if isinstance(line, str) else line
    path = tmp_path / "r.jsonl"
    _write(path, line, {"arch": arch, "measured_ms": 1.0})
    with pytest.raises(ConfigError) as info:
        read_measured(path)
    assert str(info.value).startswith(f"{path}: line 1: ") and fragment in str(info.value)


def test_records_of_another_device_or_space_belong_to_another_fit(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, LatencyRecord(get_space(SPACE).largest(), 2.0).to_dict("note10"))
    with pytest.raises(ConfigError, match="record 1 is of device 'note10' and space 'tiny', not 'cpu-ort'"):
        read_latency_records(path, "cpu-ort", SPACE)
    with pytest.raises(ConfigError, match="pass another --records file"):
        read_measured(path, space="ofa-mbv3-cifar")
