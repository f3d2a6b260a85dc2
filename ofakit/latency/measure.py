"""Measuring subnets end to end on a device: random subnets, interleaved timing in groups that also hold the latency
table's reference model, two passes per group (their disagreement is the noise floor), and latency records appended
to a JSONL file so that a killed measurement resumes where it stopped.

`ofakit latency validate` scores estimators on such measurements (`ofakit.latency.validate`); `ofakit latency fit`
fits a learned predictor on the records (`ofakit.predict.latency`).
"""
from __future__ import annotations

import random
import statistics
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.io import append_jsonl, read_jsonl
from ofakit.schema import build
from ofakit.latency.backends import Backend, Runner, backend_for
from ofakit.latency.devices import DeviceSpec
from ofakit.latency.table import LatencyTable
from ofakit.space import SearchSpace

STALL_DRAWS = 50  # sample_archs gives up after this many times n draws in a row that find no new subnet


@dataclass(frozen=True)
class ValidateConfig:
    """How subnets are sampled and measured."""

    samples: int = 30  # random subnets
    resolutions: tuple[int, ...] = ()  # drawn from these (empty: every resolution the table covers)
    seed: int = 0  # seeds the subnets
    group: int = 25  # subnets loaded and interleaved at once (memory: one runtime session each)
    warmup: int = 2  # untimed rounds per pass
    reps: int = 8  # timed rounds per pass (each visit: one untimed call, then `calls` timed ones)
    calls: int = 3  # timed calls per visit


def sample_archs(space: SearchSpace, resolutions: Sequence[int], n: int, rng: random.Random, *,
                 exclude: Callable[[ArchConfig], bool] | None = None) -> list[ArchConfig]:
    """`n` random subnets that build distinct networks (`SearchSpace.key`), with resolutions drawn from
    `resolutions`, none for which `exclude` is true. More than the space holds at those resolutions is a
    ConfigError, and so is drawing `STALL_DRAWS` times `n` subnets in a row that add no new one (what `exclude`
    leaves may be fewer than `n`)."""
    resolutions = list(resolutions)
    at = f"at resolution(s) {', '.join(map(str, resolutions))}"
    distinct = space.num_architectures() // len(space.resolutions) * len(set(resolutions))
    if n > distinct:
        raise ConfigError(f"space {space.name!r} has only {distinct} distinct subnets {at}; lower --samples (asked "
                          f"for {n})")
    out: dict[tuple, ArchConfig] = {}
    stale = 0
    while len(out) < n:
        a = space.sample(rng)
        a = ArchConfig.from_dict({**a.to_dict(), "resolution": rng.choice(resolutions)})
        if (exclude is None or not exclude(a)) and out.setdefault(space.key(a), a) is a:
            stale = 0
            continue
        stale += 1
        if stale > STALL_DRAWS * n:
            besides = " besides those excluded (e.g. a predictor's own)" if exclude is not None else ""
            raise ConfigError(f"found only {len(out)} distinct subnets of space {space.name!r} {at}{besides} after "
                              f"{stale} draws in a row found no new one; lower --samples (asked for {n})")
    return list(out.values())


def interleaved(runners: Sequence[Runner], *, warmup: int, reps: int, calls: int = 3) -> list[list[float]]:
    """ms per call of each runner over `reps` rounds (after `warmup`), each round visiting every runner once, in
    forward order on even rounds and backward on odd ones.

    A visit makes one untimed call (the model's weights come back into the caches, as they are when a layer is
    profiled back to back) and then `calls` timed ones, so that interleaving spreads drift without timing cold caches.
    """
    times: list[list[float]] = [[] for _ in runners]
    for rnd in range(warmup + reps):
        order = range(len(runners)) if rnd % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            runners[i].time(1)
            t = runners[i].time(calls)
            if rnd >= warmup:
                times[i].extend(t)
    return times


def statistic(times: Sequence[float], name: str) -> float:
    """The statistic a table's entries hold, of end-to-end times (so both sides of the comparison agree)."""
    if name == "p10":
        ordered = sorted(times)
        return ordered[int(0.1 * (len(ordered) - 1))]
    return statistics.median(times) if name == "median" else statistics.fmean(times)


@dataclass
class MeasuredGroup:
    """One group of subnets measured end to end: each pass's statistic per subnet, and the reference model's level."""

    archs: list[ArchConfig]
    passes: tuple[list[float], list[float]]
    reference_ms: tuple[float, float] | None  # the reference's p10 in each pass (None: the table has no reference)

    @property
    def measured(self) -> list[float]:
        """Per subnet, the mean of its two passes."""
        return [(a + b) / 2 for a, b in zip(*self.passes)]

    @property
    def reference_level(self) -> float | None:
        return None if self.reference_ms is None else statistics.median(self.reference_ms)


def check_repetitions(*, reps: int, calls: int) -> None:
    """Timed rounds and calls per round of at least 1 (none would time nothing); a ConfigError otherwise."""
    for name, value in (("reps", reps), ("calls", calls)):
        if value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value}")


def check_resolutions(table: LatencyTable, resolutions: Sequence[int]) -> tuple[int, ...]:
    """`resolutions`, or every resolution of the table when empty; a resolution the table lacks is a ConfigError."""
    resolutions = tuple(resolutions) or tuple(table.resolutions)
    missing = [r for r in resolutions if r not in table.entries]
    if missing:
        raise ConfigError(f"latency table {table.name!r} has no entries at resolution(s) "
                          f"{', '.join(map(str, missing))} (it has: {', '.join(map(str, table.resolutions))})")
    return resolutions


def measure_groups(device: DeviceSpec, space: SearchSpace, table: LatencyTable, archs: Sequence[ArchConfig],
                   cfg: ValidateConfig = ValidateConfig()) -> Iterator[MeasuredGroup]:
    """Measure `archs` end to end in groups of `cfg.group`, each interleaved with the table's reference model and
    timed in two passes; yields each group once measured (so a caller can store it before the next one starts)."""
    from ofakit.latency.profile import reference_runner
    from ofakit.supernet import build_supernet, extract_subnet

    backend: Backend = backend_for(device)
    ref = table.meta.get("reference") or {}
    ref_arch = ArchConfig.from_dict(ref["arch"]) if ref.get("arch") else None
    supernet = build_supernet(space).eval()
    for start in range(0, len(archs), cfg.group):
        chunk = list(archs[start:start + cfg.group])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runners = [backend.load(extract_subnet(supernet, a).eval(), (backend.settings.batch, 3, a.resolution,
                                                                         a.resolution)) for a in chunk]
            if ref_arch is not None:
                runners.append(reference_runner(backend, space, ref_arch))
        passes: tuple[list[float], list[float]] = ([], [])
        refs: list[float] = []
        for p in range(2):
            times = interleaved(runners, warmup=cfg.warmup, reps=cfg.reps, calls=cfg.calls)
            if ref_arch is not None:  # the reference level as in profiling: a low percentile
                ref_times = sorted(times.pop())
                refs.append(ref_times[int(0.1 * (len(ref_times) - 1))])
            passes[p].extend(statistic(t, table.statistic) for t in times)
        del runners
        yield MeasuredGroup(chunk, passes, (refs[0], refs[1]) if refs else None)


@dataclass(frozen=True)
class LatencyRecord:
    """One subnet measured end to end: the table's statistic (mean of two passes), and the table's reference model
    measured in the same group (None when the table has no reference), which tells the machine's drift."""

    arch: ArchConfig
    measured_ms: float
    reference_ms: float | None = None

    def to_dict(self, device: str) -> dict[str, Any]:
        return {"device": device, "arch": self.arch.to_dict(), "measured_ms": self.measured_ms,
                "reference_ms": self.reference_ms}


def records_path_for(predictor: Path) -> Path:
    """Where the latency records of the predictor stored at `predictor` are kept by default: beside it,
    `<name>.records.jsonl` (e.g. cpu-ort_tiny.predictor.records.jsonl)."""
    return predictor.with_name(predictor.name.removesuffix(".json") + ".records.jsonl")


@dataclass(frozen=True)
class _RecordLine:
    """What a line of a latency records file may hold: `ofakit latency fit` writes all four keys; a user's own
    stopwatch needs only the arch and the milliseconds."""

    arch: ArchConfig
    measured_ms: float
    reference_ms: float | None = None
    device: str | None = None


def latency_record(data: Any, where: str = "latency record") -> tuple[LatencyRecord, str | None]:
    """A record (and the device it names, if any) from one JSON line, typed: unknown keys, wrong types and
    non-positive milliseconds are a ConfigError."""
    line = build(_RecordLine, data, where)
    for name in ("measured_ms", "reference_ms"):
        value = getattr(line, name)
        if value is not None and not value > 0:
            raise ConfigError(f"{where}: {name} must be a positive number of milliseconds, got {value!r}")
    ref = None if line.reference_ms is None else float(line.reference_ms)
    return LatencyRecord(line.arch, float(line.measured_ms), ref), line.device


WHAT = "a latency records file (JSON lines of {\"arch\": {...}, \"measured_ms\": ...})"


def read_measured(path: str | Path, *, space: str | None = None, device: str | None = None) -> list[LatencyRecord]:
    """The records of a JSONL file of measured subnets, one per network (the last record of an arch wins). A torn
    last line from a kill is ignored; any other line that is not a record, or a record of another space than `space`
    or naming another device than `device`, is a ConfigError naming the file and line."""
    def record(data: Any) -> LatencyRecord:
        rec, named = latency_record(data)
        if space is not None and rec.arch.space != space:
            raise ConfigError(f"a subnet of space {rec.arch.space!r}, not {space!r}; pass another --records file")
        if device is not None and named not in (None, device):
            raise ConfigError(f"a record of device {named!r}, not {device!r}; pass another --records file")
        return rec

    return list({rec.arch: rec for rec in read_jsonl(path, WHAT, record)}.values())


def read_latency_records(path: Path, device: str, space: str) -> dict[ArchConfig, LatencyRecord]:
    """Records `ofakit latency fit` stored so far for (device, space), by arch (see `read_measured`)."""
    return {r.arch: r for r in read_measured(path, space=space, device=device)}


def measure_latency_records(device: DeviceSpec, space: SearchSpace, table: LatencyTable, archs: Sequence[ArchConfig],
                            path: Path, cfg: ValidateConfig, *,
                            on_group: Callable[[int, int, int], None] | None = None) -> list[LatencyRecord]:
    """Records of `archs`: those already in `path`, and the others measured now, appended group by group.

    Args:
        on_group: called after each group with (records done, records wanted, records measured by this call).
    """
    done = read_latency_records(path, device.name, space.name)
    todo = [a for a in archs if a not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    measured = 0
    for group in measure_groups(device, space, table, todo, cfg):
        for arch, ms in zip(group.archs, group.measured):
            done[arch] = LatencyRecord(arch, ms, group.reference_level)
            append_jsonl(path, done[arch].to_dict(device.name))
        measured += len(group.archs)
        if on_group:
            on_group(len(archs) - len(todo) + measured, len(archs), measured)
    return list(done.values())
