"""The one reader of measured-latency records (latency fit's records, a user's own stopwatch)."""
from __future__ import annotations

import json
import random
import re

import pytest

from ofakit.errors import ConfigError
from ofakit.latency.measure import LatencyRecord, read_latency_records, read_measured, sample_archs
from ofakit.space import get_space

SPACE = "tiny"


def _write(path, *lines) -> None:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def test_records_round_trip_and_the_last_of_an_arch_wins(tmp_path):
    a, b = get_space(SPACE).largest(), get_space(SPACE).smallest()
    path = tmp_path / "r.jsonl"
    _write(path, LatencyRecord(a, 2.0, 1.0).to_dict("cpu-ort"), {"arch": b.to_dict(), "measured_ms": 1.5},
           LatencyRecord(a, 2.5, 1.1).to_dict("cpu-ort"))
    with open(path, "a") as fh:
        fh.write('{"arch": {"space": "ti')  # a torn last line (a kill leaves no newline after it)
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
    """The error names the file line (blank lines and all), and only what differs: no 'None' for what was not asked."""
    path = tmp_path / "r.jsonl"
    space = get_space(SPACE)
    _write(path, LatencyRecord(space.smallest(), 1.0).to_dict("cpu-ort"), "",
           LatencyRecord(space.largest(), 2.0).to_dict("note10"))
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 3: a record of device 'note10', not 'cpu-ort'; pass "
                                          r"another --records file$"):
        read_latency_records(path, "cpu-ort", SPACE)
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 1: a subnet of space 'tiny', not 'ofa-mbv3-cifar'; pass "
                                          r"another --records file$") as info:
        read_measured(path, space="ofa-mbv3-cifar")
    assert "None" not in str(info.value)


@pytest.mark.parametrize("bad", ["garbage", '{"arch": {}, \'measured_ms\': 1.0}'])
def test_a_line_that_is_not_json_is_an_error_unless_it_is_a_torn_last_line(tmp_path, bad):
    """Only a last line with no newline after it is what a kill leaves; a bad line anywhere else is the user's
    mistake, named with its line, rather than a record silently lost."""
    space = get_space(SPACE)
    good = [LatencyRecord(a, 1.0).to_dict("cpu-ort") for a in (space.smallest(), space.largest())]
    path = tmp_path / "r.jsonl"
    _write(path, good[0], bad, good[1])
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 2: not a latency records file .*\(not JSON: .*\); fix or "
                                          r"delete the line$"):
        read_measured(path)
    _write(path, good[0], good[1], bad)  # the last line, but ended: not torn
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 3: "):
        read_measured(path)
    path.write_text(path.read_text()[:-1])  # the same, cut before its newline: torn by a kill
    assert [r.arch for r in read_measured(path)] == [space.smallest(), space.largest()]


class _CountingRandom(random.Random):
    """A random generator that fails the test after `limit` choices (a sampler that would never stop)."""

    def __init__(self, seed: int, limit: int = 2_000_000) -> None:
        super().__init__(seed)
        self.left = limit

    def choice(self, seq):
        self.left -= 1
        if self.left < 0:
            pytest.fail("sample_archs is still drawing: it would never stop")
        return super().choice(seq)


def test_sampling_more_subnets_than_the_space_holds_is_an_error():
    space = get_space(SPACE)
    at_one = space.num_architectures() // len(space.resolutions)
    archs = sample_archs(space, (16,), 50, _CountingRandom(0))
    assert len({space.key(a) for a in archs}) == 50
    with pytest.raises(ConfigError, match=rf"space 'tiny' has only {at_one} distinct subnets at resolution\(s\) 16; "
                                          rf"lower --samples \(asked for {at_one + 1}\)$"):
        sample_archs(space, (16,), at_one + 1, _CountingRandom(0))
    with pytest.raises(ConfigError, match=rf"has only {2 * at_one} distinct subnets at resolution\(s\) 16, 24"):
        sample_archs(space, (16, 24), 2 * at_one + 1, _CountingRandom(0))


def test_sampling_stops_when_what_exclude_leaves_runs_out():
    """`exclude` leaves only the 6 uniform subnets of depth 1 at resolution 16, and 7 are asked for: the sampler
    gives up instead of drawing forever."""
    space = get_space(SPACE)
    plain = {space.key(a) for a in space.uniform_grid((16,)) if a.depths == (1, 1)}
    with pytest.raises(ConfigError, match=r"found only (\d+) distinct subnets of space 'tiny' at resolution\(s\) 16 "
                                          r"besides those excluded .* draws in a row found no new one; lower "
                                          rf"--samples \(asked for {len(plain) + 1}\)$") as info:
        sample_archs(space, (16,), len(plain) + 1, _CountingRandom(0), exclude=lambda a: space.key(a) not in plain)
    assert 0 < int(re.search(r"found only (\d+)", str(info.value))[1]) <= len(plain)
