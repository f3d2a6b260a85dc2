"""How far this machine is from the one a latency table was measured on, and the correction estimates get for it.

A table of a local device is a measurement of one machine at one time: on another machine, or the same one under
another load, every entry is off by about the same factor. Each table made by `ofakit profile` holds a reference model
timed while the table was made; timing it again now (about a second) gives the factor, and estimates are multiplied
by it (drift normalization). `drift_for` decides, per device and space, whether the correction is measured:

- mode "auto" (the default of `specialize`, `arch info` and `latency estimate`): measured for a device that runs here
  (reached locally, its runtime installed) whose table has a reference; otherwise no correction, and the report says
  why;
- mode "on" (`--drift`): measured, or a one-line error saying why it cannot be;
- mode "off" (`--no-drift`): no correction: estimates are the table's, deterministic.

When the machine runs more than `WARN_FACTOR` times faster or slower than the table's, or its CPU model differs, the
report says so and names the `ofakit profile` command that measures this machine's own table.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.errors import BackendUnavailableError, ConfigError, OfakitError
from ofakit.latency.devices import DeviceSpec, get_device
from ofakit.latency.table import LatencyTable, find_table, how_to_profile

if TYPE_CHECKING:
    from ofakit.latency.backends import Runner

DRIFT_MODES = ("auto", "on", "off")
WARN_FACTOR = 1.5  # a machine this much faster or slower than the table's gets a re-profile hint


@dataclass(frozen=True)
class Drift:
    """The correction applied to a table's estimates, and why.

    Args:
        scale: multiplies every estimate (1.0: none).
        how: "measured" (the reference timed now), "off" (asked for none) or "none" (cannot be measured here).
        why: one line that says what was done, for the report.
        table_ms: the reference model in the table (ms), when it has one.
        now_ms: the reference model timed now (ms), when measured.
        hint: when this machine is far from the table's: what differs and the command that profiles it.
    """

    scale: float
    how: str
    why: str
    table_ms: float | None = None
    now_ms: float | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scale": round(self.scale, 4), "how": self.how, "why": self.why}
        if self.table_ms is not None:
            out["reference_table_ms"] = round(self.table_ms, 4)
        if self.now_ms is not None:
            out["reference_now_ms"] = round(self.now_ms, 4)
        if self.hint:
            out["hint"] = self.hint
        return out


def _why_not_here(device: DeviceSpec) -> str | None:
    """Why the reference cannot be timed here (None when it can): remote or table-only devices, missing runtimes."""
    from ofakit.latency.backends import BACKENDS

    if device.backend.name not in BACKENDS and not (device.reach.benchmark or device.reach.python):
        return f"device {device.name!r} is not profiled by ofakit (backend {device.backend.name!r})"
    if device.reach.via != "local":
        return f"device {device.name!r} is reached over {device.reach.via}; pass --drift to time its reference there"
    reason = BACKENDS.get(device.backend.name).unavailable()
    return None if reason is None else f"backend {device.backend.name!r} cannot run here: {reason}"


def _reference(table: LatencyTable) -> float | None:
    ref = table.meta.get("reference") or {}
    return float(ref["ms"]) if ref.get("ms") and ref.get("arch") else None


def drift_for(device: str, space: str, *, mode: str = "auto", table_free: bool = False,
              measure: Callable[[LatencyTable, DeviceSpec], float] | None = None) -> Drift:
    """The drift correction of `device`'s (name or alias) table for `space` under `mode` (one of DRIFT_MODES).

    Args:
        table_free: the latency model in use has no table behind it (an op model, a calibration, a structural
            model): in auto mode, no correction.
        measure: times the table's reference model now and returns (reference now) / (reference in the table);
            default: `ofakit.latency.profile.reference_scale` with the device's backend (imports torch).
    """
    if mode not in DRIFT_MODES:
        raise ConfigError(f"unknown drift mode {mode!r}; known: {', '.join(DRIFT_MODES)}")
    spec = get_device(device)
    if mode == "off":
        return Drift(1.0, "off", "no drift correction (--no-drift): the table's own numbers")
    reason = None
    if mode == "auto":
        reason = "the device's latency model has no table to drift from" if table_free else _why_not_here(spec)
    if reason is not None:  # checked before the table: an estimate-only device may have none
        return Drift(1.0, "none", f"no drift correction: {reason}")
    if mode == "on" and table_free:
        raise ConfigError(f"--drift applies only to table-based (lut) latency models: the latency model of device "
                          f"{spec.name!r} for space {space!r} has no latency table, so there is no reference to time; "
                          "drop --drift")
    table = find_table(spec.name, space)
    ref_ms = _reference(table)
    if ref_ms is None:
        reason = (f"table {table.name!r} has no reference measurement (converted tables do not), so this machine's "
                  "drift cannot be measured")
        if mode == "on":
            raise ConfigError(f"--drift: {reason}; to make one with a reference, {how_to_profile(spec.name, space)}")
        return Drift(1.0, "none", f"no drift correction: {reason}")
    if measure is None:
        measure = _measure_reference
    try:
        scale = float(measure(table, spec))
    except BackendUnavailableError as exc:  # e.g. a GPU device on a machine without one
        if mode == "on":
            raise
        return Drift(1.0, "none", f"no drift correction: {exc}")
    now = scale * ref_ms
    why = (f"the {spec.name} table ({table.meta.get('date', 'undated')}, {table.meta.get('host', 'unknown host')}) "
           f"scaled x{scale:.3f}: its reference model runs {now:.3f} ms here now, {ref_ms:.3f} ms in the table")
    return Drift(scale, "measured", why, table_ms=ref_ms, now_ms=now, hint=_hint(table, spec, space, scale))


def _hint(table: LatencyTable, device: DeviceSpec, space: str, scale: float) -> str | None:
    """What makes this machine far from the table's, and the command that profiles it; None when close."""
    from ofakit.latency.backends.base import host_cpu

    differences = []
    if scale > WARN_FACTOR or scale < 1 / WARN_FACTOR:
        faster = 1 / scale if scale < 1 else scale
        differences.append(f"this machine runs {faster:.1f}x {'faster' if scale < 1 else 'slower'} than the "
                           "table's")
    host, here = table.meta.get("host"), host_cpu()
    if host and host not in here and here not in host:
        differences.append(f"its CPU is {here!r}, the table's {host!r}")
    if not differences:
        return None
    return (f"{'; '.join(differences)}: per-layer numbers are another machine's; profile this one: "
            f"ofakit profile --device {device.name} --space {space}")


def _measure_reference(table: LatencyTable, device: DeviceSpec) -> float:
    """(reference timed now) / (reference in the table). ONNX Runtime devices keep the exported reference model in
    the cache folder, so only the first measurement on a machine imports torch to build it."""
    from ofakit.latency.backends import backend_for
    from ofakit.latency.backends.onnxruntime import OnnxRuntimeBackend
    from ofakit.latency.profile import reference_runner, table_reference, time_against
    from ofakit.space import get_space

    ref_ms, ref_arch = table_reference(table)
    backend = backend_for(device)
    space = get_space(table.meta["space"])
    if not isinstance(backend, OnnxRuntimeBackend):
        return time_against(reference_runner(backend, space, ref_arch), ref_ms)
    shape = (backend.settings.batch, 3, ref_arch.resolution, ref_arch.resolution)
    return time_against(_reference_onnx_runner(backend, space, ref_arch, shape), ref_ms)


def reference_cache_path(space: Any, arch: Any, shape: tuple[int, ...]) -> Path:
    """Where the reference model `arch` of `space`, exported for inputs of `shape`, is kept: the file name holds
    what the exported bytes depend on (the network, the input shape, the ONNX opset, the versions of ofakit, torch
    and onnxruntime), so that an upgrade exports it again rather than reuse a file another version made."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from ofakit import __version__
    from ofakit.io import cache_dir
    from ofakit.latency.backends import onnxruntime

    versions = []
    for package in ("torch", "onnxruntime"):
        try:
            versions.append(version(package))
        except PackageNotFoundError:
            versions.append(None)
    key = hashlib.sha1(repr((space.key(arch), shape, onnxruntime.OPSET, __version__, *versions)).encode())
    return cache_dir() / "reference-models" / f"{space.name}-{key.hexdigest()[:16]}.onnx"


def _reference_onnx_runner(backend: Any, space: Any, arch: Any, shape: tuple[int, ...]) -> Runner:
    """The reference model exported to ONNX and loaded: from the cache folder (made there on first use). A cached
    file that does not load (cut short, damaged) is removed and the model exported again, once."""
    from ofakit.io import atomic_path

    path = reference_cache_path(space, arch, shape)
    try:
        cached: bytes | None = path.read_bytes()
    except OSError:
        cached = None
    if cached is not None:
        try:
            return backend.load_onnx(cached, shape)
        except OfakitError:  # (the backend, not the file: e.g. a provider this onnxruntime lacks)
            raise
        except Exception:  # noqa: BLE001 - onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    from ofakit.latency.backends.onnxruntime import to_onnx
    from ofakit.supernet import build_supernet, extract_subnet

    data = to_onnx(extract_subnet(build_supernet(space).eval(), arch).eval(), shape)
    runner = backend.load_onnx(data, shape)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError:  # a read-only cache costs only the export next time
        pass
    return runner


__all__ = ["DRIFT_MODES", "Drift", "WARN_FACTOR", "drift_for"]
