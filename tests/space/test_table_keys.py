"""The layer shapes of the MBConv spaces match the keys of MIT's published latency tables.

`space.layers(arch)` is what latency tables key on. Here each layer is written as a MIT key and looked up in the
Samsung Note10 tables of the OFA MobileNetV3 w1.2 space (one per resolution) and the Pixel 1 table of the ProxylessNAS
mobile space; summing the Note10 entries of OFA's specialized nets gives their published latencies. The tables live
in `../shared/data/latency` (see its README for their origin) and the tests skip without them.
"""
from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest

from ofakit.arch import ArchConfig
from ofakit.space import LayerShape, get_space
from ofakit.space.mbconv import MBConvSpace

yaml = pytest.importorskip("yaml")

NOTE10_SPACE = "ofa-mbv3-w1.2"
PIXEL1_SPACE = "proxyless-mobile"


@lru_cache(maxsize=None)
def _load_yaml(path: Path) -> dict[str, dict[str, float]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path) as f:
        return yaml.load(f, Loader=loader)


def _hwc(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def note10_keys(layers: list[LayerShape]) -> Iterator[str]:
    """MIT's Note10 keys, one per layer, e.g. `expanded_conv-input:112x112x24-output:56x56x32-expand:144-...`."""
    names = {"stem": "Conv", "final_expand": "Conv_1", "pool": "AvgPool2D", "feature_mix": "Conv_2"}
    for layer in layers:
        io = f"input:{_hwc(layer.input)}-output:{_hwc(layer.output)}"
        if layer.op == "mbconv":
            yield (f"expanded_conv-{io}-expand:{layer.mid}-kernel:{layer.kernel}-stride:{layer.stride}"
                   f"-idskip:{int(layer.skip)}-se:{int(layer.se)}-hs:{int(layer.act == 'hswish')}")
        elif layer.op == "classifier":
            yield f"Logits-input:{_hwc(layer.input)}-output:{layer.output[2]}"
        else:
            yield f"{names[layer.op]}-{io}"


def pixel1_keys(layers: list[LayerShape]) -> Iterator[str]:
    """MIT's ProxylessNAS keys: `expand` is the ratio, no se/hs fields, `Conv_1` is the feature mix before pooling,
    and one `Logits` entry (on the 7x7 map) times pooling and classifier together."""
    pool = None
    for layer in layers:
        io = f"input:{_hwc(layer.input)}-output:{_hwc(layer.output)}"
        if layer.op == "mbconv":
            ratio, rest = divmod(layer.mid, layer.input[2])
            assert rest == 0, f"{layer}: middle width is not a whole multiple of the input width"
            yield (f"expanded_conv-{io}-expand:{ratio}-kernel:{layer.kernel}-stride:{layer.stride}"
                   f"-idskip:{int(layer.skip)}")
        elif layer.op == "stem":
            yield f"Conv-{io}"
        elif layer.op == "feature_mix":
            yield f"Conv_1-{io}"
        elif layer.op == "pool":
            pool = layer
        elif layer.op == "classifier":
            yield f"Logits-input:{_hwc(pool.input)}-output:{layer.output[2]}"
        else:
            raise AssertionError(f"no Pixel 1 key for layer {layer}")


def uniform_subnets(space: MBConvSpace, resolution: int) -> Iterator[ArchConfig]:
    """Subnets that, together, hold every layer shape the space has at `resolution`.

    A block's shape depends only on its stage, whether it opens the stage, its own kernel and expand ratio, and the
    resolution; depth decides only which blocks run. So uniform subnets (one kernel, one expand ratio everywhere) at
    every depth hold every block position x kernel x expand, and with them the stem, first block and head.
    """
    s = space.spec
    for k, e, d in itertools.product(s.kernel_choices, s.expand_choices, s.depth_choices):
        yield space.uniform(kernel=k, expand=e, depth=d, resolution=resolution)


@pytest.fixture(scope="module")
def note10(shared_data: Path) -> dict[int, dict[str, dict[str, float]]]:
    folder = shared_data / "latency" / "note10-ofa-mbv3-w1.2"
    if not folder.is_dir():
        pytest.skip(f"Note10 latency tables not found in {folder}")
    return {r: _load_yaml(folder / f"{r}_lookup_table.yaml") for r in get_space(NOTE10_SPACE).resolutions}


@pytest.fixture(scope="module")
def pixel1(shared_data: Path) -> dict[str, dict[str, float]]:
    path = shared_data / "latency" / "pixel1-proxylessnas" / "mobile_trim.yaml"
    if not path.is_file():
        pytest.skip(f"Pixel 1 latency table not found at {path}")
    return _load_yaml(path)


# -- (a) Note10, OFA MobileNetV3 w1.2 -------------------------------------------------------------------------
def test_note10_tables_cover_every_layer_shape(note10):
    space = get_space(NOTE10_SPACE)
    assert sorted(note10) == list(range(160, 225, 4))
    for resolution, table in note10.items():
        keys = {key for arch in uniform_subnets(space, resolution) for key in note10_keys(space.layers(arch))}
        missing = sorted(keys - set(table))
        assert not missing, f"{len(missing)} layer(s) at {resolution} have no Note10 entry, e.g. {missing[:3]}"
        # stem, first block, 5 stages x (first, later) x 3 kernels x 3 expands, 4 head layers: the table exactly
        assert len(keys) == 2 + 5 * 2 * 9 + 4 == len(table)


def test_note10_tables_cover_random_subnets(note10):
    space = get_space(NOTE10_SPACE)
    rng = random.Random(0)
    for _ in range(200):
        arch = space.sample(rng)
        missing = [k for k in note10_keys(space.layers(arch)) if k not in note10[arch.resolution]]
        assert not missing, f"{arch.to_json()}: no Note10 entry for {missing}"


# -- (b) Pixel 1, ProxylessNAS mobile -------------------------------------------------------------------------
def test_pixel1_table_covers_every_layer_shape(pixel1):
    space = get_space(PIXEL1_SPACE)
    assert space.resolutions == (224,)
    keys = {key for arch in uniform_subnets(space, 224) for key in pixel1_keys(space.layers(arch))}
    missing = sorted(keys - set(pixel1))
    assert not missing, f"{len(missing)} layer(s) have no Pixel 1 entry, e.g. {missing[:3]}"
    # The table also times kernels 5 and 7 for the fixed first block (kernel 3 here); nothing else goes unused.
    assert all(k.startswith("expanded_conv-input:112x112x32-output:112x112x16-") for k in set(pixel1) - keys)
    assert len(set(pixel1) - keys) == 2


def test_pixel1_table_covers_random_subnets(pixel1):
    space = get_space(PIXEL1_SPACE)
    rng = random.Random(0)
    for _ in range(200):
        arch = space.sample(rng)
        missing = [k for k in pixel1_keys(space.layers(arch)) if k not in pixel1]
        assert not missing, f"{arch.to_json()}: no Pixel 1 entry for {missing}"


# -- (c) published Note10 latencies of OFA's specialized nets -------------------------------------------------
@pytest.mark.parametrize(("prefix", "expected_ms"), [
    ("note10_lat-30ms_", 29.97),
    ("note10_lat-41ms_", 39.91),
    ("note10_lat-50ms_", 49.78),
])
def test_note10_sum_of_specialized_nets(note10, shared_data, prefix, expected_ms):
    from ofakit.interop.ofa_config import arch_from_ofa_config

    nets = json.loads((shared_data / "ofa_specialized_nets.json").read_text())
    (entry,) = [v for k, v in nets.items() if k.startswith(prefix)]
    arch: ArchConfig = arch_from_ofa_config(entry["net_config"], entry["image_size"])
    assert arch.space == NOTE10_SPACE
    table = note10[arch.resolution]
    assert round(sum(table[k]["mean"] for k in note10_keys(get_space(arch.space).layers(arch))), 2) == expected_ms
