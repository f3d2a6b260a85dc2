"""Convert MIT HAN Lab's published latency tables (YAML) into ofakit tables.

Two formats exist. The once-for-all Note10 tables (one YAML per resolution) key a block as
`expanded_conv-input:HxWxC-output:HxWxC-expand:<middle channels>-kernel:K-stride:S-idskip:0|1-se:0|1-hs:0|1` with
values `{count, mean, std}`. The ProxylessNAS Pixel 1 table (224 only) keys it as `...-expand:<ratio>-kernel:K-
stride:S-idskip:0|1` with `{count, mean, var}`, names the feature-mix conv `Conv_1` and times average pooling and the
classifier together as one `Logits` entry (Cai et al., "Once-for-All", ICLR 2020; "ProxylessNAS", ICLR 2019).

Rather than parse MIT's keys, the converter walks every layer of the target space (`ofakit.latency.layers`), writes
the MIT key of each, and copies that entry under the layer's canonical key. Entries of the source that no layer of
the space uses are listed in the table's notes, never guessed at.
"""
from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofakit import __version__
from ofakit.errors import ConfigError
from ofakit.io import read_yaml_file
from ofakit.latency.layers import distinct_layers
from ofakit.latency.table import Entry, LatencyTable, layer_key
from ofakit.schema import build
from ofakit.space import LayerShape, get_space

STYLES = ("ofa", "proxyless")  # ofa: expand = channels, std; proxyless: expand = ratio, var, fused Logits
_HEAD_NAMES = {"stem": "Conv", "final_expand": "Conv_1", "pool": "AvgPool2D", "feature_mix": "Conv_2"}


def _hwc(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def mit_key(layer: LayerShape, style: str, *, pool: LayerShape | None = None) -> str:
    """MIT's key of a layer. For the proxyless style the classifier's key needs the pooling layer before it."""
    io = f"input:{_hwc(layer.input)}-output:{_hwc(layer.output)}"
    if layer.op == "mbconv":
        if style == "ofa":
            return (f"expanded_conv-{io}-expand:{layer.mid}-kernel:{layer.kernel}-stride:{layer.stride}"
                    f"-idskip:{int(layer.skip)}-se:{int(layer.se)}-hs:{int(layer.act == 'hswish')}")
        ratio = layer.mid / layer.input[2]
        ratio_text = str(int(ratio)) if ratio.is_integer() else str(ratio)
        return (f"expanded_conv-{io}-expand:{ratio_text}-kernel:{layer.kernel}-stride:{layer.stride}"
                f"-idskip:{int(layer.skip)}")
    if layer.op == "classifier":
        source = pool if style == "proxyless" and pool is not None else layer
        return f"Logits-input:{_hwc(source.input)}-output:{layer.output[2]}"
    names = {"stem": "Conv", "feature_mix": "Conv_1"} if style == "proxyless" else _HEAD_NAMES
    name = names.get(layer.op)
    if name is None:
        raise ConfigError(f"MIT's {style} tables have no entry for a {layer.op!r} layer")
    return f"{name}-{io}"


def detect_style(source: Mapping[str, Any]) -> str:
    """'ofa' when block keys carry se/hs flags (Note10 tables), else 'proxyless' (Pixel 1 table)."""
    blocks = [k for k in source if str(k).startswith("expanded_conv-")]
    if not blocks:
        raise ConfigError("not a MIT latency table: no 'expanded_conv-...' entries")
    return "ofa" if all("-se:" in k and "-hs:" in k for k in blocks) else "proxyless"


@dataclass(frozen=True)
class MitEntry:
    """One entry of MIT's tables: the mean time in ms over `count` runs, with its std (once-for-all) or variance
    (ProxylessNAS)."""

    mean: float
    count: int = 0
    std: float | None = None
    var: float | None = None


def _entry(value: Any, key: str, where: str) -> Entry:
    e = build(MitEntry, value, f"{where}: entry {key!r}")
    for name in ("mean", "count", "std", "var"):
        if getattr(e, name) is not None and getattr(e, name) < 0:
            raise ConfigError(f"{where}: entry {key!r}: {name} must not be negative, got {getattr(e, name)!r}")
    std = e.std if e.std is not None else math.sqrt(e.var or 0.0)
    return Entry(mean=float(e.mean), std=float(std), count=e.count)


def convert(sources: Mapping[int, Mapping[str, Any]], *, device: str, space: str, source: str, style: str | None = None,
            attribution: str = "", license: str = "") -> LatencyTable:
    """An ofakit table from MIT tables (resolution -> parsed YAML) for `space`.

    Raises ConfigError when a layer of the space has no entry at a resolution the source covers.
    """
    sp = get_space(space)
    notes = []
    table = LatencyTable({
        "device": device, "space": space, "backend": "tflite", "precision": "fp32", "threads": 1, "batch": 1,
        "date": datetime.date.today().isoformat(), "ofakit_version": __version__, "source": source,
        "call_overhead_ms": 0.0, "attribution": attribution, "license": license,
    })
    for resolution, src in sorted(sources.items()):
        try:
            st = style or detect_style(src)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if st not in STYLES:
            raise ConfigError(f"unknown MIT table style {st!r}; known: {', '.join(STYLES)}")
        used: set[str] = set()
        pool = None
        for layer in distinct_layers(sp, resolution):
            if layer.op == "pool":
                pool = layer
            fused = st == "proxyless" and layer.op in ("pool", "classifier")  # one `Logits` entry for both
            key = mit_key(layer if not fused else LayerShape("classifier", (1, 1, 0), (1, 1, sp.num_classes)), st,
                          pool=pool)
            if key not in src:
                raise ConfigError(f"{source}: no entry {key!r} at resolution {resolution} for layer "
                                  f"{layer_key(layer)} of space {space!r}; is it the table of that space?")
            used.add(key)
            entry = _entry(src[key], key, source)
            if fused and layer.op == "pool":
                entry = Entry(entry.mean, entry.std, entry.count, note=f"pooling and classifier timed together ({key})")
            elif fused:
                entry = Entry(0.0, 0.0, 0, note=f"timed together with the pooling layer ({key})")
            table.put(resolution, layer_key(layer), entry)
        unused = sorted(str(k) for k in src if k not in used)
        if unused:
            notes.append(f"{len(unused)} source entr{'y' if len(unused) == 1 else 'ies'} at {resolution} match no "
                         f"layer of {space} and were left out: {', '.join(unused)}")
    if notes:
        table.meta["notes"] = notes
    return table


def read_yaml(path: Path) -> dict[str, Any]:
    """One MIT table file: a mapping of MIT's layer keys to entries (checked when converted)."""
    def mapping(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping of MIT table keys, got {type(data).__name__}")
        return data

    return read_yaml_file(path, "a MIT latency table (YAML)", build=mapping)


def read_sources(path: Path, space: str) -> dict[int, dict[str, Any]]:
    """Resolution -> parsed YAML: a folder of `<resolution>_lookup_table.yaml` files, or one file (of a space with
    one resolution, or named `<resolution>_...yaml`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist; expected a folder of '<resolution>_lookup_table.yaml' files, or "
                          "one such file")
    if path.is_dir():
        files: dict[int, Path] = {}
        for p in sorted(path.glob("*.yaml")):
            m = re.match(r"(\d+)_", p.name)
            if not m:
                continue
            if int(m[1]) in files:
                raise ConfigError(f"{path}: {files[int(m[1])].name} and {p.name} are both tables of resolution "
                                  f"{int(m[1])}; keep one of them in the folder")
            files[int(m[1])] = p
        if not files:
            raise ConfigError(f"{path}: no '<resolution>_lookup_table.yaml' files")
        return {r: read_yaml(p) for r, p in files.items()}
    m = re.match(r"(\d+)_", path.name)
    if m:
        return {int(m[1]): read_yaml(path)}
    resolutions = get_space(space).resolutions
    if len(resolutions) != 1:
        raise ConfigError(f"{path}: cannot tell its resolution; name it '<resolution>_lookup_table.yaml' (space "
                          f"{space!r} has {len(resolutions)} resolutions)")
    return {resolutions[0]: read_yaml(path)}
