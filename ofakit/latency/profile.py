"""Profile a device: time every distinct layer of a space at chosen resolutions and store them as a latency table.

Each layer is built alone (`ofakit.latency.build`), loaded through the device's backend and timed with warm-up and
repetitions; the table keeps the median, the 10th percentile (what estimates sum: the table's `statistic`) and the
spread. Work goes in rounds of `flush_every` layers: before and after
each round the reference model (a fixed subnet of the space) is timed too, each entry records the reference level of
its round (`ref_ms`), and the table is written atomically. A killed run loses at most one round, and a rerun with the
same output measures only what is missing. The per-call cost of the runtime (an identity model) is recorded as
`call_overhead_ms`, which the estimator pays once per network instead of once per layer.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofakit import __version__
from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.latency.backends import Backend, Runner, backend_for, measure
from ofakit.latency.devices import DeviceSpec, get_device
from ofakit.latency.layers import plan, reference_arch
from ofakit.latency.table import Entry, LatencyTable, find_table, layer_key
from ofakit.space import LayerShape, SearchSpace, get_space

# environment fields that must agree for a resumed table to stay one measurement
_SAME_ENVIRONMENT = ("runtime", "runtime_version", "host", "threads", "providers", "gpu")


@dataclass(frozen=True)
class ProfileConfig:
    """How layers are timed."""

    resolutions: tuple[int, ...] = ()  # network input sizes to cover (empty: every resolution of the space)
    warmup: int = 10  # untimed calls per layer
    reps: int = 40  # timed calls per layer
    flush_every: int = 12  # layers per round: the reference is timed around each round, the table written after it
    reference_reps: int = 20  # timed calls of the reference model per measurement
    overhead_reps: int = 200  # timed calls of the identity model that measures the per-call cost


@dataclass(frozen=True)
class Progress:
    """What a progress callback hears after each layer."""

    done: int
    total: int
    key: str
    resolution: int
    ms: float


def reference_runner(backend: Backend, space: SearchSpace, arch: ArchConfig) -> Runner:
    """The reference model (a subnet extracted from a freshly built supernet), loaded on the device."""
    from ofakit.supernet import build_supernet, extract_subnet

    net = extract_subnet(build_supernet(space).eval(), arch).eval()
    r = arch.resolution
    return backend.load(net, (backend.settings.batch, 3, r, r))


def overhead_runner(backend: Backend) -> Runner:
    """A model that does (almost) nothing: its latency is the runtime's per-call cost."""
    from torch import nn

    return backend.load(nn.Identity(), (backend.settings.batch, 3, 8, 8))


def measure_reference(runner: Runner, reps: int) -> float:
    """The reference model's level: the 10th percentile of `reps` calls, after two untimed ones.

    A low percentile rather than the median: a whole network runs long enough to be preempted on a busy machine, and
    the fastest calls are the ones that were not.
    """
    return measure(runner, warmup=2, reps=reps).p10


def _environment(backend: Backend) -> dict[str, Any]:
    env = backend.environment()
    env.update(os=platform.platform(), python=platform.python_version(), cpu_count=os.cpu_count())
    return env


def _check_resume(table: LatencyTable, device: DeviceSpec, space: SearchSpace, env: dict[str, Any]) -> None:
    where = table.path or "the table"
    if table.meta.get("device") != device.name or table.meta.get("space") != space.name:
        raise ConfigError(f"{where} is the table of device {table.meta.get('device')!r} and space "
                          f"{table.meta.get('space')!r}, not {device.name!r} and {space.name!r}; pass another --out")
    s = device.backend
    settings = {"batch": s.batch, "precision": s.precision, "threads": s.threads}
    changed = [f"{k} {table.meta.get(k)!r} -> {v!r}" for k, v in settings.items() if table.meta.get(k) != v]
    if changed:
        raise ConfigError(f"{where} was profiled with other settings of device {device.name!r} ({'; '.join(changed)})"
                          "; resuming would mix two measurements: pass another --out, or delete the file to start "
                          "over")
    old = table.meta.get("environment") or {}
    differ = [f"{k} {old.get(k)!r} -> {env.get(k)!r}" for k in _SAME_ENVIRONMENT if old.get(k) != env.get(k)]
    if differ:
        raise ConfigError(f"{where} was profiled in another environment ({'; '.join(differ)}); resuming would mix "
                          "two measurements: pass another --out, or delete the file to start over")


def new_table(device: DeviceSpec, space: SearchSpace, env: dict[str, Any]) -> LatencyTable:
    s = device.backend
    return LatencyTable({
        "device": device.name, "space": space.name, "backend": s.name, "runtime_version": env.get("runtime_version"),
        "precision": s.precision, "threads": s.threads, "batch": s.batch, "host": env.get("gpu") or env.get("host"),
        "date": datetime.date.today().isoformat(), "ofakit_version": __version__,
        "source": f"ofakit profile --device {device.name} --space {space.name}", "statistic": "p10",
        "environment": env,
    })


def todo(table: LatencyTable, layers: dict[int, list[LayerShape]]) -> list[tuple[int, LayerShape]]:
    """(resolution, layer) pairs the table does not hold yet, in plan order."""
    return [(r, layer) for r, ls in layers.items() for layer in ls if table.get(r, layer_key(layer)) is None]


def profile(device: DeviceSpec, space: SearchSpace, out: str | Path, cfg: ProfileConfig = ProfileConfig(), *,
            on_progress: Callable[[Progress], None] | None = None,
            on_start: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Fill (or complete) the table at `out` for `device` and `space`; returns it.

    Args:
        device: where to measure (its backend must run here).
        space: the search space whose layers are timed.
        out: the table file; when it exists, only the layers it lacks are measured.
        cfg: resolutions, warm-up and repetitions, round size.
        on_progress: called after each layer.
        on_start: called once with (layers to measure, layers already stored).
    """
    from ofakit.latency.build import input_shape, layer_module

    out = Path(out)
    resolutions = tuple(cfg.resolutions) or space.resolutions
    bad = [r for r in resolutions if isinstance(r, bool) or not isinstance(r, int) or r < 8]
    if bad:
        raise ConfigError(f"resolutions must be integers >= 8, got {', '.join(map(str, bad))}")
    backend = backend_for(device)
    env = _environment(backend)
    if out.exists():
        table = LatencyTable.load(out)
        _check_resume(table, device, space, env)
    else:
        table = new_table(device, space, env)
    layers = plan(space, resolutions)
    pending = todo(table, layers)
    if on_start:
        on_start(len(pending), sum(len(ls) for ls in layers.values()) - len(pending))
    started = time.perf_counter() - (table.meta.get("environment") or {}).get("profile_seconds", 0.0)
    if "call_overhead_ms" not in table.meta:
        table.meta["call_overhead_ms"] = measure(overhead_runner(backend), warmup=20, reps=cfg.overhead_reps).p10
    if pending:
        ref_dict = (table.meta.get("reference") or {}).get("arch")
        ref_arch = ArchConfig.from_dict(ref_dict) if ref_dict else reference_arch(space)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # off-range reference resolutions are fine here
            ref_runner = reference_runner(backend, space, ref_arch)
        ref_before = measure_reference(ref_runner, cfg.reference_reps)
        for start in range(0, len(pending), cfg.flush_every):
            measured = []
            for r, layer in pending[start:start + cfg.flush_every]:
                t = measure(backend.load(layer_module(layer), input_shape(layer, device.backend.batch)),
                            warmup=cfg.warmup, reps=cfg.reps)
                measured.append((r, layer_key(layer), t))
                if on_progress:
                    on_progress(Progress(start + len(measured), len(pending), measured[-1][1], r, t.p10))
            ref_after = measure_reference(ref_runner, cfg.reference_reps)
            ref = math.sqrt(ref_before * ref_after)  # the reference level over the round
            for r, key, t in measured:
                entry = Entry(mean=t.mean, std=t.std, count=t.count, median=t.median, p10=t.p10, ref_ms=ref)
                table.put(r, key, entry)
            ref_before = ref_after
            _finish_round(table, ref_arch, time.perf_counter() - started)
            table.save(out)
    elif not out.exists():
        table.save(out)
    return table


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _finish_round(table: LatencyTable, ref_arch: ArchConfig, seconds: float) -> None:
    """Update the reference level (median over every entry's round), the profiling time and the load range."""
    refs = [e.ref_ms for sec in table.entries.values() for e in sec.values() if e.ref_ms is not None]
    table.meta["reference"] = {"arch": ref_arch.to_dict(), "ms": statistics.median(refs)}
    env = table.meta.setdefault("environment", {})
    env["profile_seconds"] = round(seconds, 1)
    load = _load_average()
    if load is not None:  # 1-minute load average: lowest and highest seen at the end of a round
        low, high = env.get("load_average_1min", [load, load])
        env["load_average_1min"] = [min(low, load), max(high, load)]


def reference_scale(table: LatencyTable, backend: Backend, space: SearchSpace, *, reps: int = 20,
                    seconds: float = 1.0) -> float:
    """(reference measured now) / (reference in the table): multiply estimates by it to follow the drift.

    The reference is timed for at least `reps` calls and about `seconds`, after half as long untimed: a freshly
    loaded sub-millisecond model timed over a few milliseconds only can read 1.7x its level (seen in
    bench/reference/front.py), from cold caches and clocks rather than drift.
    """
    ref_ms, ref_arch = table_reference(table)
    return time_against(reference_runner(backend, space, ref_arch), ref_ms, reps=reps, seconds=seconds)


def time_against(runner: Runner, ref_ms: float, *, reps: int = 20, seconds: float = 1.0) -> float:
    """(the reference `runner` timed now) / `ref_ms`, timed as `reference_scale` says."""
    first = measure(runner, warmup=2, reps=3).median
    calls = max(reps, math.ceil(seconds * 1000 / max(first, 1e-3)))
    measure(runner, warmup=0, reps=max(1, calls // 2))
    return measure(runner, warmup=0, reps=calls).p10 / ref_ms


def table_reference(table: LatencyTable) -> tuple[float, ArchConfig]:
    """The table's reference model and its level (ms); a ConfigError for a table without one."""
    ref = table.meta.get("reference") or {}
    if not ref.get("ms") or not ref.get("arch"):
        raise ConfigError(f"latency table {table.name!r} has no reference measurement (converted tables do not); "
                          "drift normalization (--drift) needs a table made by ofakit profile")
    return ref["ms"], ArchConfig.from_dict(ref["arch"])


def drift_scale(device: str, space: str, *, reps: int = 20) -> float:
    """`reference_scale` of `device`'s (name or alias) table for `space`, measured with the device's backend here."""
    spec = get_device(device)
    table = find_table(spec.name, space)
    table_reference(table)  # before building a backend: a table without a reference is the error to report
    return reference_scale(table, backend_for(spec), get_space(space), reps=reps)


__all__: Sequence[str] = ("ProfileConfig", "Progress", "drift_scale", "profile", "reference_scale", "time_against",
                          "todo")
