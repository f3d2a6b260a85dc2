"""Converters of MIT's two YAML table formats (once-for-all Note10: std, expand = channels; ProxylessNAS Pixel 1:
var, expand = ratio, pooling and classifier timed together)."""
from __future__ import annotations

import math

import pytest

from ofakit.errors import ConfigError
from ofakit.latency.layers import distinct_layers
from ofakit.latency.mit import convert, detect_style, mit_key, read_sources
from ofakit.latency.table import layer_key
from ofakit.space import get_space


def _fake_source(space: str, resolution: int, style: str, value: dict) -> dict:
    """A MIT-format table holding every layer of `space` at `resolution` with the same value."""
    layers = distinct_layers(get_space(space), resolution)
    pool = next(x for x in layers if x.op == "pool")
    keys = {mit_key(x, style, pool=pool) for x in layers if not (style == "proxyless" and x.op == "pool")}
    return {k: dict(value) for k in keys}


def test_ofa_style_keys_channels_and_std():
    src = _fake_source("tiny", 32, "ofa", {"count": 5, "mean": 1.0, "std": 0.1})
    assert detect_style(src) == "ofa"
    assert any("-expand:32-" in k and k.endswith("-se:1-hs:1") for k in src)
    table = convert({32: src}, device="cpu-ort", space="tiny", source="t")
    assert len(table) == len(distinct_layers(get_space("tiny"), 32))
    assert all(e.std == 0.1 and e.count == 5 for e in table.entries[32].values())


def test_proxyless_style_ratio_var_and_fused_logits():
    src = _fake_source("proxyless-mobile", 224, "proxyless", {"count": 5, "mean": 1.0, "var": 0.04})
    assert detect_style(src) == "proxyless"
    assert any("-expand:6-" in k and k.endswith("-idskip:0") for k in src)
    table = convert({224: src}, device="cpu-ort", space="proxyless-mobile", source="t")
    entries = table.entries[224]
    pool = [e for k, e in entries.items() if k.startswith("pool/")]
    classifier = [e for k, e in entries.items() if k.startswith("classifier/")]
    assert pool[0].mean == 1.0 and "classifier timed together" in pool[0].note
    assert classifier[0].mean == 0.0 and "timed together with the pooling layer" in classifier[0].note
    assert all(math.isclose(e.std, 0.2) for k, e in entries.items() if not k.startswith("classifier/"))


def test_missing_layer_in_source_is_named():
    src = _fake_source("tiny", 32, "ofa", {"mean": 1.0})
    dropped = sorted(k for k in src if k.startswith("expanded_conv"))[0]
    del src[dropped]
    with pytest.raises(ConfigError, match=rf"no entry '{dropped}' at resolution 32 .* is it the table of that space\?"):
        convert({32: src}, device="cpu-ort", space="tiny", source="t")


def test_unused_source_entries_are_listed():
    src = _fake_source("tiny", 32, "ofa", {"mean": 1.0})
    src["expanded_conv-input:9x9x9-output:9x9x9-expand:9-kernel:9-stride:1-idskip:1-se:0-hs:0"] = {"mean": 1.0}
    table = convert({32: src}, device="cpu-ort", space="tiny", source="t")
    assert "1 source entry at 32 match no layer" in table.meta["notes"][0]


@pytest.mark.parametrize(("entry", "match"), [
    ({"std": 1.0}, r"^t: entry '.*': missing key\(s\) 'mean'$"),
    ({"mean": 1.0, "p50": 1.0}, r"unknown key\(s\) 'p50'; allowed: mean, count, std, var"),
    ({"mean": "abc"}, r"^t: entry '.*': mean: expected a number, got 'abc'$"),
    ({"mean": 1.0, "var": -1}, r"^t: entry '.*': var must not be negative, got -1$"),
    ({"mean": -1.0}, r"mean must not be negative"),
    ({"mean": 1.0, "count": "x"}, r"count: expected an integer, got 'x'"),
    ({"mean": float("nan")}, r"mean: expected a number, got nan"),
    ("1.0", r"expected a mapping, got '1.0'"),
])
def test_bad_source_entries_are_named(entry, match):
    src = _fake_source("tiny", 32, "ofa", {"mean": 1.0})
    src[next(iter(src))] = entry
    with pytest.raises(ConfigError, match=match):
        convert({32: src}, device="cpu-ort", space="tiny", source="t")


def test_not_a_mit_table():
    with pytest.raises(ConfigError, match=r"not a MIT latency table"):
        detect_style({"Conv-input:1x1x1-output:1x1x1": {"mean": 1}})


def test_read_sources_needs_a_resolution_for_multi_resolution_spaces(tmp_path):
    (tmp_path / "table.yaml").write_text("a: {mean: 1}\n")
    with pytest.raises(ConfigError, match=r"cannot tell its resolution; name it '<resolution>_lookup_table.yaml'"):
        read_sources(tmp_path / "table.yaml", "tiny")
    (tmp_path / "24_lookup_table.yaml").write_text("a: {mean: 1}\n")
    assert list(read_sources(tmp_path, "tiny")) == [24]


def test_read_sources_says_a_missing_path_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"none\.yaml does not exist; expected a folder of "
                                          r"'<resolution>_lookup_table\.yaml' files, or one such file$"):
        read_sources(tmp_path / "none.yaml", "ofa-mbv3-w1.2")  # (not: cannot tell its resolution)


def test_two_files_of_one_resolution_are_refused(tmp_path):
    """Which of the two would be converted is not for ofakit to guess (it used to keep one silently)."""
    (tmp_path / "224_lookup_table.yaml").write_text("a: 1\n")
    (tmp_path / "224_copy.yaml").write_text("b: 2\n")
    (tmp_path / "192_lookup_table.yaml").write_text("c: 3\n")
    with pytest.raises(ConfigError, match=r"224_copy\.yaml and 224_lookup_table\.yaml are both tables of resolution "
                                          r"224; keep one of them in the folder$"):
        read_sources(tmp_path, "ofa-mbv3-w1.2")
    (tmp_path / "224_copy.yaml").unlink()
    assert read_sources(tmp_path, "ofa-mbv3-w1.2") == {192: {"c": 3}, 224: {"a": 1}}


def test_note10_source_keys_match_the_converted_keys(shared_data):
    sources = read_sources(shared_data / "latency" / "note10-ofa-mbv3-w1.2", "ofa-mbv3-w1.2")
    assert sorted(sources) == list(range(160, 225, 4))
    assert all(len(src) == 96 for src in sources.values())
    table = convert(sources, device="note10", space="ofa-mbv3-w1.2", source="t")
    assert "notes" not in table.meta  # every entry used
    assert {layer_key(x) for x in distinct_layers(get_space("ofa-mbv3-w1.2"), 224)} == set(table.entries[224])
