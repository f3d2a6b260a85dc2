"""Latency tables: canonical keys, JSON round trip, checks on load, lookup errors, and the committed MIT tables."""
from __future__ import annotations

import json
import random

import pytest

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.table import (
    TABLES_PATH_ENV,
    Entry,
    LatencyTable,
    available_tables,
    find_table,
    layer_key,
    parse_layer_key,
    table_dirs,
)
from ofakit.space import SPACES, get_space

NOTE10_NETS = [("note10_lat-30ms_", 29.97), ("note10_lat-41ms_", 39.91), ("note10_lat-50ms_", 49.78)]


# -- keys -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES.names())
def test_layer_keys_round_trip_for_every_space(space):
    sp = get_space(space)
    rng = random.Random(0)
    for arch in (sp.largest(), sp.smallest(), *(sp.sample(rng) for _ in range(5))):
        for layer in sp.layers(arch):
            assert parse_layer_key(layer_key(layer)) == layer


def test_layer_key_spells_out_every_field():
    layer = get_space("ofa-mbv3-w1.0").layers(get_space("ofa-mbv3-w1.0").largest())[6]
    assert layer_key(layer) == "mbconv/56x56x24-28x28x40/k7/s2/m144/se1/relu/skip0"


def test_malformed_key_is_named():
    with pytest.raises(ConfigError, match=r"malformed layer key 'mbconv/k5'; expected e.g."):
        parse_layer_key("mbconv/k5")


# -- JSON ---------------------------------------------------------------------------------------------------------
def _table(**meta) -> LatencyTable:
    table = LatencyTable({"device": "cpu-ort", "space": "tiny", **meta})
    arch = get_space("tiny").largest()
    for i, layer in enumerate(get_space("tiny").layers(arch)):
        table.put(arch.resolution, layer_key(layer), Entry(0.1 * (i + 1), 0.01, 10, median=0.1 * (i + 1)))
    return table


def test_save_and_load_round_trip(tmp_path):
    table = _table(reference={"arch": get_space("tiny").largest().to_dict(), "ms": 1.0})
    path = table.save(tmp_path / "t.json")
    back = LatencyTable.load(path)
    assert back.meta == table.meta and back.entries == table.entries and back.path == path
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary files left
    json.loads(path.read_text())


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d.update(format="x"), r"not an ofakit latency table"),
    (lambda d: d.update(version=9), r"table version 9 is not supported"),
    (lambda d: d.update(extra=1), r"unknown key\(s\) 'extra' \(did you mean 'meta'\?\); allowed: format, version, meta, entries"),
    (lambda d: d["meta"].update(colour="red"), r"t.json: meta: unknown key\(s\) 'colour'; allowed: device, space"),
    (lambda d: d["meta"].pop("space"), r"t.json: meta: missing key\(s\) 'space'"),
    (lambda d: d["entries"].update(big={}), r"'entries' maps resolutions"),
    (lambda d: d["entries"]["32"].update({"conv/x": {"mean": 1}}), r"malformed layer key 'conv/x'"),
    (lambda d: next(iter(d["entries"]["32"].values())).update(p99=1.0), r"at 32: unknown key\(s\) 'p99'; allowed: mean"),
    (lambda d: next(iter(d["entries"]["32"].values())).update(mean=-1), r"at 32: 'mean' must not be negative, got -1"),
    (lambda d: next(iter(d["entries"]["32"].values())).pop("mean"), r"at 32: missing key\(s\) 'mean'"),
    (lambda d: d["meta"].update(statistic="p99"), r"meta: statistic 'p99' is not one of mean, median, p10"),
    (lambda d: next(iter(d["entries"]["32"].values())).update(count="x"), r"at 32: count: expected an integer, got 'x'"),
    (lambda d: next(iter(d["entries"]["32"].values())).update(std="1"), r"at 32: std: expected a number, got '1'"),
    (lambda d: next(iter(d["entries"]["32"].values())).update(count=-3), r"at 32: 'count' must not be negative"),
    (lambda d: d["meta"].update(call_overhead_ms="0.1"), r"meta: call_overhead_ms: expected a number, got '0.1'"),
    (lambda d: d["meta"].update(call_overhead_ms=-0.1), r"meta: call_overhead_ms must not be negative"),
    (lambda d: d["meta"].update(reference={"arch": get_space("tiny").largest().to_dict(), "ms": "1"}),
     r"meta: reference: ms: expected a number, got '1'"),
    (lambda d: d["meta"].update(reference={"arch": get_space("tiny").largest().to_dict(), "ms": 0}),
     r"meta: reference: ms must be positive, got 0"),
    (lambda d: d["meta"].update(reference={"ms": 1.0}), r"meta: reference: missing key\(s\) 'arch'"),
    (lambda d: d["meta"].update(threads="1"), r"meta: threads: expected an integer, got '1'"),
    (lambda d: d["entries"].update({"²": {}}), r"'entries' maps resolutions"),
    (lambda d: d["meta"].update(batch=0), r"t.json: meta: batch must be >= 1 and threads >= 0 .*, got 0 and 0$"),
    (lambda d: d["meta"].update(threads=-3), r"t.json: meta: batch must be >= 1 and threads >= 0 .*, got 1 and -3$"),
    (lambda d: d["meta"].update(call_overhead_ms=0.6),
     r"t.json: meta: call_overhead_ms 0.6 is more than half of the entries, each of which includes it once \(median "
     r"0.5 ms\): estimates would count those layers as negative times; is it in milliseconds\?$"),
    (lambda d: d["meta"].update(reference={"arch": get_space("ofa-mbv3-cifar").largest().to_dict(), "ms": 1.0}),
     r"t.json: meta: reference: arch is of space 'ofa-mbv3-cifar', not the table's 'tiny'$"),
    (lambda d: d["meta"].update(reference={"arch": {**get_space("tiny").largest().to_dict(), "kernel_sizes": [9] * 4},
                                           "ms": 1.0}),
     r"t.json: meta: reference: arch is not a network of space 'tiny': kernel size 9 at block 0 is not allowed"),
    (lambda d: d["meta"].update(reference={"arch": {**get_space("tiny").largest().to_dict(), "depths": [2]},
                                           "ms": 1.0}),
     r"t.json: meta: reference: arch is not a network of space 'tiny': 'depths' has 1 values?; space 'tiny' needs 2"),
])
def test_bad_tables_are_named(mutate, match):
    data = json.loads(_table().to_json())
    mutate(data)
    with pytest.raises(ConfigError, match=match):
        LatencyTable.from_dict(data, "t.json")


def test_a_reference_and_an_overhead_that_fit_the_table_load():
    """What the checks above allow: a reference of the table's space at a resolution outside the search range (a
    CNN runs at any size), an overhead above a few entries (a layer cheaper than the call times a little below it)
    but not above half of them, and a space ofakit does not know."""
    arch = {**get_space("tiny").largest().to_dict(), "resolution": 40}
    data = json.loads(_table(reference={"arch": arch, "ms": 1.0}, call_overhead_ms=0.5).to_json())
    table = LatencyTable.from_dict(data, "t.json")
    assert table.call_overhead_ms == 0.5 and table.meta["reference"]["arch"] == arch
    data["meta"].update(space="my-space", reference={"arch": {**arch, "space": "my-space"}, "ms": 1.0})
    assert LatencyTable.from_dict(data, "t.json").meta["space"] == "my-space"


def test_every_shipped_table_loads():
    """The checks on load hold for the tables ofakit ships (the reference a network of the table's space; in fact the
    overhead is at most even the fastest entry)."""
    from ofakit.latency.devices import devices, shipped_dir

    shipped = [p for d in devices().names() for p in available_tables(d, [shipped_dir("latency_tables")]).values()]
    assert len(shipped) >= 4
    for path in shipped:
        table = LatencyTable.load(path)
        assert table.call_overhead_ms <= min(e.value(table.statistic) for sec in table.entries.values()
                                             for e in sec.values())


def test_malformed_json_is_one_line(tmp_path):
    (tmp_path / "t.json").write_text("{")
    with pytest.raises(ConfigError, match=r"t.json: not a latency table \(not JSON: "):
        LatencyTable.load(tmp_path / "t.json")


# -- lookup -------------------------------------------------------------------------------------------------------
def test_missing_key_names_the_key_and_the_profile_command():
    table = _table()
    key = "mbconv/8x8x16-4x4x24/k9/s2/m64/se1/hswish/skip0"
    with pytest.raises(LatencyLookupError, match=rf"no entry '{key}' at resolution 32 in latency table "
                                                 r"'cpu-ort_tiny'; run: ofakit profile --device cpu-ort --space tiny"):
        table.ms(32, key)


def test_missing_resolution_names_the_resolutions_option():
    with pytest.raises(LatencyLookupError, match=r"has no entries at resolution 24 \(it has: 32\); run: ofakit "
                                                 r"profile --device cpu-ort --space tiny --resolutions 24"):
        _table().ms(24, "anything")


def test_a_missing_layer_is_never_counted_as_zero():
    table = _table()
    arch = get_space("tiny").largest()
    del table.entries[32][layer_key(get_space("tiny").layers(arch)[3])]
    est = LutEstimator(table)
    with pytest.raises(LatencyLookupError, match=r"no entry 'mbconv/"):
        est.estimate(arch)
    with pytest.raises(LatencyLookupError, match=r"no entry 'mbconv/"):
        est.estimate_batch([arch])


def test_the_table_statistic_picks_the_summed_field():
    table = _table(statistic="p10")
    key = next(iter(table.entries[32]))
    table.put(32, key, Entry(3.0, median=2.0, p10=1.5))
    assert table.ms(32, key) == 1.5
    table.meta["statistic"] = "median"
    assert table.ms(32, key) == 2.0
    table.put(32, key, Entry(3.0))  # an entry without the field falls back to its mean
    assert table.ms(32, key) == 3.0


def test_entries_are_scaled_to_the_reference_level():
    table = _table(reference={"ms": 2.0})
    key = next(iter(table.entries[32]))
    table.put(32, key, Entry(1.0, median=1.0, ref_ms=2.5))
    assert table.ms(32, key, per_round=True) == pytest.approx(1.0 * 2.0 / 2.5)
    assert table.ms(32, key) == 1.0  # off by default


def test_find_table_without_one_says_which_command_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv(TABLES_PATH_ENV, str(tmp_path))
    with pytest.raises(LatencyLookupError, match=r"no latency table for device 'h100-tensorrt' and space "
                                                 r"'ofa-mbv3-w1.0' \(looked in .*\); run: ofakit profile --device "
                                                 r"h100-tensorrt --space ofa-mbv3-w1.0"):
        find_table("h100-tensorrt", "ofa-mbv3-w1.0")


def test_a_tflite_phone_names_the_two_ways_on_and_a_phone_with_a_benchmark_tool_is_profiled(tmp_path, monkeypatch):
    """One story: a TFLite phone is profiled over adb with benchmark_model once its device file names the tool;
    without one, the error says how to add it, or how to fit a model on subnets timed on the phone."""
    with pytest.raises(LatencyLookupError, match=r"it has tables for: ofa-mbv3-w1.2; device 'note10' is a TFLite "
                                                 r"phone whose device file names no benchmark tool.*benchmark: "
                                                 r"/data/local/tmp/benchmark_model.*ai-edge-torch.*run: ofakit "
                                                 r"profile --device note10 --space ofa-mbv3-w1.0; or .* ofakit latency "
                                                 r"adapt --device note10 --space ofa-mbv3-w1.0 --records"):
        find_table("note10", "ofa-mbv3-w1.0")
    from ofakit.latency.devices import DEVICES_PATH_ENV
    from ofakit.latency.table import how_to_profile

    (tmp_path / "mine.yaml").write_text("name: my-phone\nkind: mobile\nbackend: {name: tflite}\n"
                                        "reach: {via: adb, benchmark: /data/local/tmp/benchmark_model}\n")
    monkeypatch.setenv(DEVICES_PATH_ENV, str(tmp_path))
    assert how_to_profile("my-phone", "ofa-mbv3-w1.0") == "run: ofakit profile --device my-phone --space ofa-mbv3-w1.0"


def test_tables_from_the_environment_come_first(tmp_path, monkeypatch):
    _table().save(tmp_path / "cpu-ort_tiny.json")
    monkeypatch.setenv(TABLES_PATH_ENV, str(tmp_path))
    assert table_dirs()[0] == tmp_path
    assert available_tables("cpu-ort")["tiny"] == tmp_path / "cpu-ort_tiny.json"
    assert len(find_table("local-cpu", "tiny")) == len(_table())


def test_a_device_whose_name_begins_another_ones_gets_only_its_own_tables(tmp_path):
    """Devices `my` and `my_cpu`: `my_cpu_tiny.json` is my_cpu's table of tiny, not my's of a space 'cpu_tiny'; a
    space part with a `_` counts for `my` when the table says it is my's."""
    _table(device="my_cpu").save(tmp_path / "my_cpu_tiny.json")
    _table(device="my", space="x_y").save(tmp_path / "my_x_y.json")
    assert available_tables("my_cpu", [tmp_path]) == {"tiny": tmp_path / "my_cpu_tiny.json"}
    assert available_tables("my", [tmp_path]) == {"x_y": tmp_path / "my_x_y.json"}


def test_a_table_whose_content_contradicts_its_file_name_is_refused(tmp_path, monkeypatch):
    _table(space="tiny").save(tmp_path / "cpu-ort_ofa-mbv3-cifar.json")
    monkeypatch.setenv(TABLES_PATH_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"the table is for device 'cpu-ort' and space 'tiny', but its file name"):
        find_table("cpu-ort", "ofa-mbv3-cifar")


# -- the committed MIT tables -------------------------------------------------------------------------------------
def _note10_arch(nets: dict, prefix: str) -> ArchConfig:
    from ofakit.interop.ofa_config import arch_from_ofa_config

    (entry,) = [v for k, v in nets.items() if k.startswith(prefix)]
    return arch_from_ofa_config(entry["net_config"], entry["image_size"])


# The three nets as ArchConfig dicts (from ../shared/data/ofa_specialized_nets.json, checked below), so that the
# committed table is tested without ../shared.
NOTE10_ARCH_DICTS = {
    "note10_lat-30ms_": {"space": "ofa-mbv3-w1.2", "resolution": 224, "depths": [2, 3, 3, 3, 4],
                         "kernel_sizes": [3, 3, 3, 3, 5, 3, 3, 3, 5, 5, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
                         "expand_ratios": [3, 3, 3, 3, 4, 3, 4, 3, 4, 4, 3, 3, 6, 4, 4, 3, 6, 6, 4, 3]},
    "note10_lat-41ms_": {"space": "ofa-mbv3-w1.2", "resolution": 220, "depths": [2, 3, 4, 4, 4],
                         "kernel_sizes": [3, 3, 3, 3, 7, 3, 3, 3, 7, 3, 3, 3, 3, 5, 3, 3, 3, 3, 3, 3],
                         "expand_ratios": [3, 4, 3, 3, 4, 4, 6, 3, 6, 6, 3, 4, 6, 6, 6, 4, 6, 6, 6, 3]},
    "note10_lat-50ms_": {"space": "ofa-mbv3-w1.2", "resolution": 220, "depths": [3, 4, 4, 4, 3],
                         "kernel_sizes": [5, 3, 3, 3, 5, 3, 3, 5, 7, 7, 3, 5, 7, 5, 3, 3, 3, 3, 3, 3],
                         "expand_ratios": [3, 6, 6, 3, 4, 6, 6, 3, 6, 6, 4, 4, 6, 6, 6, 6, 6, 6, 6, 3]},
}


@pytest.mark.parametrize(("prefix", "expected_ms"), NOTE10_NETS)
def test_note10_sums_from_mit_yaml(shared_data, prefix, expected_ms):
    from ofakit.latency.mit import convert, read_sources

    table = convert(read_sources(shared_data / "latency" / "note10-ofa-mbv3-w1.2", "ofa-mbv3-w1.2"),
                    device="note10", space="ofa-mbv3-w1.2", source="test")
    arch = _note10_arch(json.loads((shared_data / "ofa_specialized_nets.json").read_text()), prefix)
    assert round(LutEstimator(table).estimate(arch), 2) == expected_ms


@pytest.mark.parametrize(("prefix", "expected_ms"), NOTE10_NETS)
def test_note10_sums_from_the_committed_table(prefix, expected_ms, note10_archs):
    est = LutEstimator(find_table("note10", "ofa-mbv3-w1.2"))
    arch = note10_archs[prefix]
    assert round(est.estimate(arch), 2) == expected_ms
    assert round(float(est.estimate_batch([arch])[0]), 2) == expected_ms


@pytest.fixture(scope="module")
def note10_archs() -> dict[str, ArchConfig]:
    """The three nets, written out here so that the committed-table test runs without ../shared."""
    return {p: ArchConfig.from_dict(d) for p, d in NOTE10_ARCH_DICTS.items()}


def test_note10_archs_written_here_match_mit_configs(shared_data, note10_archs):
    nets = json.loads((shared_data / "ofa_specialized_nets.json").read_text())
    for prefix, _ in NOTE10_NETS:
        assert _note10_arch(nets, prefix) == note10_archs[prefix]


@pytest.mark.parametrize(("name", "source"), [
    ("note10_ofa-mbv3-w1.2", "note10-ofa-mbv3-w1.2"),
    ("pixel1_proxyless-mobile", "pixel1-proxylessnas/mobile_trim.yaml"),
])
def test_committed_mit_tables_equal_a_fresh_conversion(shared_data, name, source):
    from ofakit.latency.mit import convert, read_sources

    committed = find_table(*name.split("_"))
    fresh = convert(read_sources(shared_data / "latency" / source, committed.meta["space"]),
                    device=committed.meta["device"], space=committed.meta["space"], source="test")
    assert fresh.entries == committed.entries
    assert committed.meta["attribution"] and committed.meta["license"]


def test_pixel1_table_covers_random_subnets():
    est = LutEstimator(find_table("pixel", "proxyless-mobile"))
    sp = get_space("proxyless-mobile")
    rng = random.Random(0)
    archs = [sp.sample(rng) for _ in range(200)]
    values = est.estimate_batch(archs)
    assert all(40 < v < 200 for v in values)
    assert values[0] == pytest.approx(est.estimate(archs[0]))


def test_a_file_in_the_tables_path_is_refused(tmp_path, monkeypatch):
    from ofakit.latency.table import table_dirs

    (tmp_path / "tables").write_text("{}")
    monkeypatch.setenv("OFAKIT_TABLES_PATH", str(tmp_path / "tables"))
    with pytest.raises(ConfigError, match=r"tables \(in \$OFAKIT_TABLES_PATH\) is a file; expected a folder"):
        table_dirs()
