"""Latency look-up tables: per-layer timings of one (device, space), as JSON keyed by a canonical layer key.

The key spells out every field of a `LayerShape` (`space.layers(arch)`), so a table holds exactly the shapes a
network is built from and a summed estimate never guesses (Cai et al., "Once-for-All", ICLR 2020, section 3.4;
Cai et al., "ProxylessNAS", ICLR 2019, latency tables):

    mbconv/56x56x24-28x28x40/k5/s2/m144/se1/relu/skip0

Entries are grouped by the network's input resolution, as MIT's tables are (one file per resolution): a subnet at
resolution r sums the entries of section r. The few shapes that occur at every resolution (the 1x1 head layers) are
measured once per section, in the same round as the rest of it, which keeps a section self-consistent. Which field
an estimate sums is the table's `statistic`: `mean` for MIT's tables, `p10` for tables ofakit profiles, because on a
shared CPU the fastest calls are the reproducible ones (the median moves with other processes' load).

Entries hold `mean`, `std`, `count` in milliseconds, and for tables that ofakit profiled also `median`, `p10` and
`ref_ms`: the latency of the table's reference model measured in the same round. Scaling each
entry by `reference.ms / ref_ms` (`per_round=True`) is offered but off by default: on the shared development CPU a
whole-network reference measured between rounds swings 2-4x with the load while short layers barely move, so it adds
noise instead of removing drift (see bench/RESULTS.md). Tables live in `latency_tables/<device>_<space>.json`;
never pickles.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_json_file, save_text_file
from ofakit.schema import build, check_keys, coerce
from ofakit.space.base import LayerShape

FORMAT = "ofakit-latency-table"
VERSION = 1
TABLES_PATH_ENV = "OFAKIT_TABLES_PATH"
PREDICTOR_SUFFIX = ".predictor.json"  # a latency predictor fitted against a table sits next to it (not a table)
ENTRY_KEYS = ("mean", "std", "count", "median", "p10", "ref_ms", "note")
STATISTICS = ("mean", "median", "p10")  # which entry field estimates sum (meta "statistic"; default "mean")

_KEY_RE = re.compile(
    r"^(?P<op>[a-z_]+)/(?P<i>\d+x\d+x\d+)-(?P<o>\d+x\d+x\d+)/k(?P<k>\d+)/s(?P<s>\d+)/m(?P<m>\d+)"
    r"/se(?P<se>[01])/(?P<act>[a-z0-9]+)/skip(?P<skip>[01])$"
)


# -- keys -----------------------------------------------------------------------------------------------------
def layer_key(layer: LayerShape) -> str:
    """The canonical table key of a layer: every LayerShape field, always in the same order."""
    (h, w, c), (ho, wo, co) = layer.input, layer.output  # (no join: a search's first cost check keys ~1,200 layers)
    return (f"{layer.op}/{h}x{w}x{c}-{ho}x{wo}x{co}/k{layer.kernel}/s{layer.stride}/m{layer.mid}"
            f"/se{int(layer.se)}/{layer.act or 'none'}/skip{int(layer.skip)}")


def parse_layer_key(key: str) -> LayerShape:
    """The LayerShape a canonical key names; a malformed key raises ConfigError."""
    m = _KEY_RE.match(key)
    if not m:
        raise ConfigError(f"malformed layer key {key!r}; expected e.g. "
                          "'mbconv/56x56x24-28x28x40/k5/s2/m144/se1/relu/skip0'")

    def shape(text: str) -> tuple[int, int, int]:
        h, w, c = map(int, text.split("x"))
        return h, w, c

    act = m["act"]
    return LayerShape(m["op"], shape(m["i"]), shape(m["o"]), kernel=int(m["k"]), stride=int(m["s"]), mid=int(m["m"]),
                      se=m["se"] == "1", act="" if act == "none" else act, skip=m["skip"] == "1")


# -- entries and tables ---------------------------------------------------------------------------------------
_hints = cache(get_type_hints)


@dataclass(frozen=True)
class Entry:
    """One layer's timing in milliseconds."""

    mean: float
    std: float = 0.0
    count: int = 0  # timed runs behind mean/std (0: not timed on its own, see `note`)
    median: float | None = None  # profiled tables
    p10: float | None = None  # profiled tables: the 10th percentile, what their estimates sum
    ref_ms: float | None = None  # the reference model, measured in the same round as this entry
    note: str = ""

    def value(self, statistic: str = "mean") -> float:
        """The entry's `statistic` (one of STATISTICS), the mean where the entry lacks it."""
        v = getattr(self, statistic)
        return self.mean if v is None else v

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "std": self.std, "count": self.count}
        for k in ("median", "p10"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.ref_ms is not None:
            out["ref_ms"] = self.ref_ms
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Entry:
        """An entry from its JSON object; unknown keys, wrong types and negative times are a ConfigError."""
        entry = _quick_entry(data)  # the usual entry, numbers only
        if entry is not None:
            return entry
        data = check_keys(data, ENTRY_KEYS, where, required=("mean",))
        hints = _hints(cls)  # once per class: get_type_hints costs ~0.1 ms, a table has ~1,600 entries
        values = {k: coerce(v, hints[k], f"{where}: {k}") for k, v in data.items()}
        for k in ("mean", "std", "median", "p10", "ref_ms", "count"):
            if values.get(k) is not None and values[k] < 0:
                raise ConfigError(f"{where}: {k!r} must not be negative, got {values[k]!r}")
        if values.get("ref_ms") == 0:
            raise ConfigError(f"{where}: 'ref_ms' must be positive")
        times = {k: float(v) for k, v in values.items() if k in _TIME_KEYS
                 and v is not None}  # 1 and 1.0 are one value: a table's JSON (and its fingerprint) stay the same
        return cls(**{**values, **times})


_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(Entry)}  # (in field order)
_TIME_KEYS = frozenset(("mean", "std", "median", "p10", "ref_ms"))  # stored as float (1 and 1.0 are one value)
_NUMBER_KEYS = frozenset(ENTRY_KEYS) - {"note"}


def _quick_entry(data: Any) -> Entry | None:
    """The Entry of a JSON object that `Entry.from_dict`'s checks pass without coercion (known keys holding numbers,
    its mean, a whole count, nothing negative or infinite, no zero ref_ms), built without the constructor's
    per-field cost: a table has ~1,600 entries to read before a search starts. None for any other object."""
    if type(data) is not dict or "mean" not in data or not _NUMBER_KEYS.issuperset(data):
        return None
    values = {**_DEFAULTS, **data}
    for k, v in data.items():
        if type(v) is float:
            if not 0.0 <= v < math.inf:  # (NaN fails too)
                return None
        elif type(v) is int and v >= 0:
            if k in _TIME_KEYS:
                values[k] = float(v)
        else:
            return None
        if k == "count" and type(v) is not int or k == "ref_ms" and v == 0:
            return None
    entry = object.__new__(Entry)
    object.__setattr__(entry, "__dict__", values)
    return entry


@dataclass(frozen=True)
class TableReference:
    """The reference model of a profiled table: a fixed subnet, and its latency at the table's level."""

    arch: ArchConfig
    ms: float


@dataclass(frozen=True)
class TableMeta:
    """What a table's "meta" may hold, with its types; only checked (the table keeps the mapping as written)."""

    device: str
    space: str
    backend: str = ""
    runtime_version: str | None = None
    precision: str = ""
    threads: int = 0
    batch: int = 1
    host: str | None = None
    date: str = ""
    ofakit_version: str = ""
    source: str = ""
    call_overhead_ms: float = 0.0  # per-call cost of the runtime that every entry includes once
    reference: TableReference | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    attribution: str = ""
    license: str = ""
    notes: tuple[str, ...] = ()
    statistic: str = "mean"  # which entry field estimates sum, one of STATISTICS

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ConfigError(f"statistic {self.statistic!r} is not one of {', '.join(STATISTICS)}")
        if self.call_overhead_ms < 0:
            raise ConfigError(f"call_overhead_ms must not be negative, got {self.call_overhead_ms!r}")
        if self.batch < 1 or self.threads < 0:
            raise ConfigError(f"batch must be >= 1 and threads >= 0 (0: the runtime's default), got {self.batch} "
                              f"and {self.threads}")
        if self.reference is not None and self.reference.ms <= 0:
            raise ConfigError(f"reference: ms must be positive, got {self.reference.ms!r}")


def _check_reference(arch: ArchConfig, space: str, where: str) -> None:
    """A table's reference model must be a network of the table's space (checked in full when ofakit knows the
    space; an off-range resolution is fine): a ConfigError naming the table otherwise."""
    import warnings

    from ofakit.errors import ArchError, UnknownNameError
    from ofakit.space import get_space

    if arch.space != space:
        raise ConfigError(f"{where}: meta: reference: arch is of space {arch.space!r}, not the table's {space!r}")
    try:
        sp = get_space(space)
    except UnknownNameError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sp.validate(arch)
        except ArchError as exc:
            raise ConfigError(f"{where}: meta: reference: arch is not a network of space {space!r}: {exc}") from None


@dataclass
class LatencyTable:
    """Per-layer latencies of one device and space, with the metadata that says how they were measured.

    Attributes:
        meta: device, space, backend, runtime_version, precision, threads, batch, host, date, ofakit_version,
            source, call_overhead_ms, reference ({"arch": ArchConfig dict, "ms": float}), environment, ...
        entries: network input resolution -> canonical layer key -> Entry.
        path: the file it was read from or last written to (not stored).
    """

    meta: dict[str, Any]
    entries: dict[int, dict[str, Entry]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.meta.get('device', '?')}_{self.meta.get('space', '?')}"

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.entries)

    @property
    def reference_ms(self) -> float | None:
        """The reference model's latency at the table's level (median over the profiling rounds), if measured."""
        ref = self.meta.get("reference") or {}
        return ref.get("ms")

    @property
    def statistic(self) -> str:
        """The entry field estimates sum: "p10" for tables ofakit profiles, "mean" for MIT's."""
        return self.meta.get("statistic", "mean")

    @property
    def call_overhead_ms(self) -> float:
        """Per-call cost of the runtime that every entry includes once (an end-to-end run pays it once)."""
        return float(self.meta.get("call_overhead_ms", 0.0))

    def __len__(self) -> int:
        return sum(len(section) for section in self.entries.values())

    def get(self, resolution: int, key: str) -> Entry | None:
        return self.entries.get(resolution, {}).get(key)

    def put(self, resolution: int, key: str, entry: Entry) -> None:
        self.entries.setdefault(resolution, {})[key] = entry

    def ms(self, resolution: int, key: str, *, per_round: bool = False) -> float:
        """The entry's latency; raises LatencyLookupError when absent.

        With `per_round`, an entry that recorded the reference level of its round is scaled to the table's level
        (reference.ms / ref_ms), which takes out the drift between profiling rounds.
        """
        entry = self.get(resolution, key)
        if entry is None:
            raise self.missing(resolution, key)
        value = entry.value(self.statistic)
        if per_round and entry.ref_ms is not None and self.reference_ms:
            return value * self.reference_ms / entry.ref_ms
        return value

    def missing(self, resolution: int, key: str) -> LatencyLookupError:
        """The error for a key this table lacks: names the key, the table and the command that fills it."""
        device, space = self.meta.get("device", "?"), self.meta.get("space", "?")
        where = f" ({self.path})" if self.path else ""
        how = how_to_profile(device, space, f" --resolutions {resolution}")
        if resolution not in self.entries:
            have = ", ".join(map(str, self.resolutions)) or "none"
            return LatencyLookupError(f"latency table {self.name!r}{where} has no entries at resolution {resolution} "
                                      f"(it has: {have}); {how}")
        return LatencyLookupError(f"no entry {key!r} at resolution {resolution} in latency table {self.name!r}{where}; "
                                  f"{how}")

    # -- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "entries": {str(r): {k: sec[k].to_dict() for k in sorted(sec)}
                            for r, sec in sorted(self.entries.items())}}

    @classmethod
    def from_dict(cls, data: Any, where: str = "latency table") -> LatencyTable:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"{where}: not an ofakit latency table (expected \"format\": {FORMAT!r})")
        check_keys(data, ("format", "version", "meta", "entries"), where)
        if data.get("version") != VERSION:
            raise ConfigError(f"{where}: table version {data.get('version')!r} is not supported (this ofakit reads "
                              f"version {VERSION})")
        meta, entries = data.get("meta"), data.get("entries")
        if not isinstance(meta, Mapping) or not isinstance(entries, Mapping):
            raise ConfigError(f"{where}: 'meta' and 'entries' must be objects")
        checked = build(TableMeta, meta, f"{where}: meta")
        if checked.reference is not None:
            _check_reference(checked.reference.arch, checked.space, where)
        table = cls(dict(meta))
        for res, section in entries.items():
            if not re.fullmatch(r"[1-9][0-9]*", str(res)) or not isinstance(section, Mapping):
                raise ConfigError(f"{where}: 'entries' maps resolutions (\"224\") to objects of entries, got {res!r}")
            for key, value in section.items():
                if not _KEY_RE.match(key):  # what parse_layer_key checks, without building the shape
                    try:
                        parse_layer_key(key)
                    except ConfigError as exc:
                        raise ConfigError(f"{where}: {exc}") from None
                entry = _quick_entry(value)  # (a message naming the entry is formatted only for the others)
                table.put(int(res), key, entry if entry is not None else Entry.from_dict(
                    value, f"{where}: entry {key!r} at {res}"))
        if checked.call_overhead_ms and len(table):  # every entry includes it once; an estimate sums (entry - overhead)
            values = sorted(e.value(table.statistic) for sec in table.entries.values() for e in sec.values())
            median = values[(len(values) - 1) // 2]  # (a layer cheaper than the call may time a little below it)
            if checked.call_overhead_ms > median:
                raise ConfigError(f"{where}: meta: call_overhead_ms {checked.call_overhead_ms!r} is more than half of "
                                  f"the entries, each of which includes it once (median {median!r} ms): estimates "
                                  "would count those layers as negative times; is it in milliseconds?")
        return table

    def to_json(self) -> str:
        """Metadata indented, then one line per entry (diffs of a re-profiled table stay readable)."""
        data = self.to_dict()
        sections = []
        for res, section in data["entries"].items():
            lines = ",\n".join(f"   {json.dumps(k)}: {json.dumps(v)}" for k, v in section.items())
            sections.append(f"  {json.dumps(res)}: {{\n{lines}\n  }}")
        head = json.dumps({k: data[k] for k in ("format", "version", "meta")}, indent=1)[:-2]
        return head + ',\n "entries": {\n' + ",\n".join(sections) + "\n }\n}\n"

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table JSON file; a missing or malformed file raises a one-line ConfigError."""
        path = Path(path)
        table = read_json_file(path, "a latency table", build=lambda data: cls.from_dict(data, str(path)))
        table.path = path
        return table

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (a crash leaves the previous file); returns the path."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save the table to")
        save_text_file(target, self.to_json(), "latency table")
        self.path = target
        return target


# -- where tables are ------------------------------------------------------------------------------------------
def table_filename(device: str, space: str) -> str:
    return f"{device}_{space}.json"


def table_dirs() -> list[Path]:
    """Folders searched for tables, first match wins: $OFAKIT_TABLES_PATH, ./latency_tables, the shipped folder."""
    from ofakit.latency.devices import shipped_dir

    dirs = [Path(p) for p in os.environ.get(TABLES_PATH_ENV, "").split(os.pathsep) if p]
    for d in dirs:
        if d.exists() and not d.is_dir():
            raise ConfigError(f"{d} (in ${TABLES_PATH_ENV}) is a file; expected a folder of latency tables")
    dirs += [Path("latency_tables"), shipped_dir("latency_tables")]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and not any(d.resolve() == u.resolve() for u in unique):
            unique.append(d)
    return unique


def available_tables(device: str, dirs: Iterable[Path] | None = None) -> dict[str, Path]:
    """Space name -> table path for every table of `device` (canonical name) found in `dirs`.

    Tables are found by name, `<device>_<space>.json`. A name whose space part holds a `_` may be another device's
    whose name starts the same way (`my_cpu_tiny.json` of device `my_cpu`, seen from device `my`; no space ofakit
    ships has a `_`), so such a file counts only when its meta.device says `device`.
    """
    found: dict[str, Path] = {}
    for folder in table_dirs() if dirs is None else dirs:
        for path in sorted(Path(folder).glob(f"{device}_*.json")):
            space = path.stem[len(device) + 1:]
            if path.name.endswith(PREDICTOR_SUFFIX) or ("_" in space and _table_device(path) != device):
                continue
            found.setdefault(space, path)
    return found


def _table_device(path: Path) -> str | None:
    """meta.device of the table file at `path`, None when it has none or is not a table (read, not checked)."""
    try:
        data = read_json_file(path, "a latency table")
    except ConfigError:
        return None
    meta = data.get("meta") if isinstance(data, Mapping) else None
    return meta.get("device") if isinstance(meta, Mapping) else None


def find_table(device: str, space: str, dirs: Iterable[Path] | None = None) -> LatencyTable:
    """The table of `device` (a name or alias) for `space`; LatencyLookupError says how to make a missing one."""
    return load_table_for(table_path(device, space, dirs), device, space)


def load_table_for(path: Path, device: str, space: str) -> LatencyTable:
    """The table at `path` (from `table_path`), checked to be for `device` (a name or alias) and `space`."""
    from ofakit.latency.devices import get_device

    name = get_device(device).name
    table = LatencyTable.load(path)
    if table.meta.get("device") != name or table.meta.get("space") != space:
        raise ConfigError(f"{path}: the table is for device {table.meta.get('device')!r} and space "
                          f"{table.meta.get('space')!r}, but its file name says {name!r} and {space!r}")
    return table


def table_path(device: str, space: str, dirs: Iterable[Path] | None = None) -> Path:
    """Where `find_table` reads the table of `device` for `space`; LatencyLookupError says how to make a missing
    one."""
    from ofakit.latency.devices import get_device

    spec = get_device(device)
    dirs = table_dirs() if dirs is None else list(dirs)
    tables = available_tables(spec.name, dirs)
    if space in tables:
        return tables[space]
    have = f"; it has tables for: {', '.join(sorted(tables))}" if tables else ""
    where = ", ".join(str(d) for d in dirs) or "no table folder found"
    raise LatencyLookupError(f"no latency table for device {spec.name!r} and space {space!r} (looked in {where})"
                             f"{have}; {how_to_profile(spec.name, space)}")


def how_to_profile(device: str, space: str, options: str = "") -> str:
    """'run: ofakit profile --device D --space S', or, for a TFLite phone whose device file names no benchmark tool,
    the two ways on: profile it over adb with TensorFlow Lite's benchmark_model, or fit a model on subnets timed end
    to end."""
    from ofakit.errors import UnknownNameError
    from ofakit.latency.devices import DEVICES_PATH_ENV, get_device

    command = f"ofakit profile --device {device} --space {space}{options}"
    try:
        spec = get_device(device)
    except (UnknownNameError, ConfigError):
        return f"run: {command}"
    if spec.backend.name == "tflite" and not spec.reach.benchmark:
        return (f"device {device!r} is a TFLite phone whose device file names no benchmark tool, so ofakit cannot "
                f"time it from here: to profile it, put a copy of its file in ${DEVICES_PATH_ENV} with "
                "`reach: {via: adb, benchmark: /data/local/tmp/benchmark_model}` (the TFLite export needs: pip "
                f"install ai-edge-torch) and run: {command}; or time a few subnets on the phone and fit a model on "
                f"them: ofakit latency adapt --device {device} --space {space} --records MEASURED.jsonl")
    return f"run: {command}"
