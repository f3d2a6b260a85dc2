"""Devices: where latency is measured, as `DeviceSpec` values loaded from `devices/*.yaml` into the `DEVICES` registry.

A device file names the hardware (kind cpu/gpu/mobile/npu), the backend that times models on it with the backend's
settings (threads, precision, batch, execution providers or compute units), and how the device is reached (this
machine, an `ssh` host or an `adb` serial). Which latency tables a device has is not written in its file: tables are
found by name (`<device>_<space>.json`, see `ofakit.latency.table`), so profiling a new space needs no edit here.

The shipped device files live in `devices/` at the repository root. A source checkout (and an editable install)
reads them there; a wheel installs a copy under `<prefix>/share/ofakit/devices` (pyproject `data-files`), which is
the second place looked at. Directories in `$OFAKIT_DEVICES_PATH` (os.pathsep-separated) add the user's own devices.

Beside the shipped files, `devices.json` (their twin) holds each one's text and parsed data, so that a search on a
shipped device does not import PyYAML (~12 ms of a cold start, most of it compiling its regular expressions): a
shipped file whose text is its twin's takes the twin's data; any other file, and every user file, is read with
YAML's safe loader. After editing a shipped file, `write_device_twin()` writes the twin again; a test checks it.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from ofakit.errors import ConfigError
from ofakit.io import atomic_write_text, read_json_file, read_user_file, read_yaml_file
from ofakit.registry import Registry
from ofakit.schema import build, check_keys

KINDS = ("cpu", "gpu", "mobile", "npu")
PRECISIONS = ("fp32", "fp16", "int8")
REACH = ("local", "ssh", "adb")
# Backends a device may name. `tflite` tables come from elsewhere (MIT measured its phones with TensorFlow Lite);
# ofakit has no TFLite profiler, so such devices are table-only.
BACKEND_NAMES = ("onnxruntime", "torch", "tensorrt", "coreml", "tflite")
DEVICES_PATH_ENV = "OFAKIT_DEVICES_PATH"
MAX_THREADS = 1024  # the most intra-op threads a device file may ask for
TWIN = "devices.json"  # the shipped device files' text and data, read without PyYAML (see the module docstring)
TWIN_FORMAT = "ofakit-devices-twin"


@dataclass(frozen=True)
class BackendSettings:
    """How the backend runs models on the device."""

    name: str  # one of BACKEND_NAMES
    threads: int = 0  # intra-op threads (0: the runtime's default)
    precision: str = "fp32"  # fp32, fp16 or int8
    batch: int = 1  # images per call
    providers: tuple[str, ...] = ()  # ONNX Runtime execution providers, in order of preference
    compute_units: str = ""  # Core ML: ALL, CPU_ONLY, CPU_AND_GPU or CPU_AND_NE


@dataclass(frozen=True)
class Reach:
    """How ofakit gets a model onto the device and a timing back."""

    via: str = "local"  # local, ssh or adb
    host: str = ""  # ssh: user@host
    serial: str = ""  # adb: device serial (empty: the one device adb sees)
    benchmark: str = ""  # remote: the benchmark command on the target (onnxruntime_perf_test, benchmark_model path)
    python: str = ""  # remote, instead of `benchmark`: a python with onnxruntime on the target, runs ofakit's timer
    workdir: str = ""  # remote: folder for the copied models (empty: /tmp over ssh, /data/local/tmp over adb)
    port: int = 0  # ssh: port (0: ssh's default)
    identity: str = ""  # ssh: private key file (-i)
    options: tuple[str, ...] = ()  # ssh: extra -o options, e.g. StrictHostKeyChecking=accept-new


@dataclass(frozen=True)
class DeviceSpec:
    """One device: its hardware kind, the backend that times models on it, and how it is reached."""

    name: str  # registry name, e.g. "note10"
    kind: str  # cpu, gpu, mobile or npu
    backend: BackendSettings
    aliases: tuple[str, ...] = ()  # other names `DEVICES.get` accepts
    description: str = ""  # one line for `ofakit devices`
    reach: Reach = Reach()
    source: str = ""  # the file it was loaded from

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the YAML fields, with tuples as lists."""
        backend = {f.name: getattr(self.backend, f.name) for f in fields(BackendSettings)}
        backend["providers"] = list(self.backend.providers)
        reach = {f.name: getattr(self.reach, f.name) for f in fields(Reach)}
        reach["options"] = list(self.reach.options)
        return {"name": self.name, "aliases": list(self.aliases), "kind": self.kind, "description": self.description,
                "backend": backend, "reach": reach}


# -- loading --------------------------------------------------------------------------------------------------
FILE_KEYS = ("name", "aliases", "kind", "description", "backend", "reach")  # DeviceSpec's fields but `source`


def _choice(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
    return value


def device_from_dict(data: Any, where: str = "device") -> DeviceSpec:
    """Build a DeviceSpec from parsed YAML; unknown keys, wrong types and illegal values raise ConfigError."""
    data = check_keys(data, FILE_KEYS, where, required=("name", "kind", "backend"))
    spec = build(DeviceSpec, {**data, "source": where}, where)
    bwhere, rwhere = f"{where}: backend", f"{where}: reach"
    backend, reach = spec.backend, spec.reach
    _choice(backend.name, BACKEND_NAMES, "name", bwhere)
    _choice(backend.precision, PRECISIONS, "precision", bwhere)
    if backend.threads < 0 or backend.batch < 1:
        raise ConfigError(f"{bwhere}: threads must be >= 0 and batch >= 1, got {backend.threads} and {backend.batch}")
    if backend.threads > MAX_THREADS:  # (like port: a runtime takes a C int, and no machine has more cores)
        raise ConfigError(f"{bwhere}: threads must be at most {MAX_THREADS}, got {backend.threads}")
    _choice(spec.kind, KINDS, "kind", where)
    _choice(reach.via, REACH, "via", rwhere)
    for key, names in (("aliases", spec.aliases), ("providers", backend.providers), ("options", reach.options)):
        if not all(names):
            raise ConfigError(f"{where}: {key!r} must be a list of names, got {list(names)!r}")
    _check_reach(reach, rwhere)
    return spec


def _check_reach(reach: Reach, where: str) -> None:
    if reach.via == "ssh" and not reach.host:
        raise ConfigError(f"{where}: via 'ssh' needs 'host' (user@host)")
    if reach.host.startswith("-") or reach.serial.startswith("-"):
        raise ConfigError(f"{where}: host and serial must not start with '-', got {reach.host or reach.serial!r}")
    if not 0 <= reach.port <= 65535:
        raise ConfigError(f"{where}: port must be 0 (ssh's default) to 65535, got {reach.port}")
    if reach.benchmark and reach.python:
        raise ConfigError(f"{where}: give either 'benchmark' (a tool on the target) or 'python' (ofakit's timer "
                          "run by that python), not both")
    ssh_only = [k for k in ("port", "identity", "options") if getattr(reach, k) and reach.via != "ssh"]
    remote_only = [k for k in ("benchmark", "python", "workdir") if getattr(reach, k) and reach.via == "local"]
    if ssh_only or remote_only:
        raise ConfigError(f"{where}: {', '.join(map(repr, ssh_only + remote_only))} do(es) not apply to via "
                          f"{reach.via!r}")
    for key in ("benchmark", "python"):  # command lines, split as a shell would
        try:
            shlex.split(getattr(reach, key))
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} {getattr(reach, key)!r} is not a command line ({exc})") from None
    if reach.workdir.startswith("~"):  # commands are quoted, so the target's shell never expands it (scp would)
        raise ConfigError(f"{where}: workdir {reach.workdir!r} starts with '~', which is not expanded on the target; "
                          f"give the folder's full path, e.g. "
                          f"{'/data/local/tmp/bench' if reach.via == 'adb' else '/home/USER/bench'}")


def load_device(path: str | Path) -> DeviceSpec:
    """Read one device YAML file (a shipped one whose text is its twin's: the twin's data)."""
    path = Path(path)
    twin = _shipped_twin().get(path.name) if path.parent == shipped_dir("devices") else None
    if twin is not None and read_user_file(path, "a device file") == twin["text"]:
        device = device_from_dict(twin["data"], str(path))
    else:
        device = read_yaml_file(path, "a device file", build=lambda data: device_from_dict(data, str(path)))
    if device.name != path.stem:
        raise ConfigError(f"{path}: name {device.name!r} differs from the file name; rename one of them")
    return device


@lru_cache(maxsize=1)
def _shipped_twin() -> dict[str, dict[str, Any]]:
    """File name -> {"text", "data"} from the shipped folder's twin (empty when there is none)."""
    path = shipped_dir("devices") / TWIN
    if not path.is_file():
        return {}
    return read_json_file(path, "the shipped device files' twin", build=_twin_files)


def _twin_files(data: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or data.get("format") != TWIN_FORMAT or not isinstance(data.get("files"), dict):
        raise ValueError(f"expected {{\"format\": {TWIN_FORMAT!r}, \"files\": {{...}}}}")
    files = data["files"]
    if not all(isinstance(v, dict) and isinstance(v.get("text"), str) and "data" in v for v in files.values()):
        raise ValueError("each file needs its \"text\" and \"data\"")
    return files


def device_twin(folder: Path) -> dict[str, Any]:
    """The twin of the device files in `folder`: each one's text and its data as YAML's safe loader reads it."""
    files = {path.name: {"text": read_user_file(path, "a device file"), "data": read_yaml_file(path, "a device file")}
             for path in sorted(folder.glob("*.yaml"))}
    return {"format": TWIN_FORMAT, "files": files}


def write_device_twin(folder: Path | None = None) -> Path:
    """Write `devices.json` for the shipped device files (or those in `folder`); returns its path."""
    folder = shipped_dir("devices") if folder is None else Path(folder)
    path = folder / TWIN
    atomic_write_text(path, json.dumps(device_twin(folder), indent=1, sort_keys=True) + "\n")
    return path


def shipped_dir(name: str) -> Path:
    """The shipped `devices/` or `latency_tables/` folder: the source checkout's, else the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "ofakit" / name


def device_dirs() -> list[Path]:
    """Folders whose `*.yaml` files are loaded into DEVICES: the shipped one, then those in $OFAKIT_DEVICES_PATH."""
    extra = [Path(p) for p in os.environ.get(DEVICES_PATH_ENV, "").split(os.pathsep) if p]
    return [shipped_dir("devices"), *extra]


def load_devices(folders: Iterable[Path]) -> Registry[DeviceSpec]:
    """A registry of every device file in `folders`; a name or alias defined twice is a ConfigError."""
    registry: Registry[DeviceSpec] = Registry("device")
    for folder in folders:
        if Path(folder).exists() and not Path(folder).is_dir():
            raise ConfigError(f"{folder} (in ${DEVICES_PATH_ENV}) is a file; expected a folder of device files")
        for path in sorted(Path(folder).glob("*.yaml")):
            device = load_device(path)
            try:
                registry.add(device.name, device, aliases=device.aliases)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    return registry


@lru_cache(maxsize=1)
def _registry(folders: tuple[Path, ...]) -> Registry[DeviceSpec]:
    return load_devices(folders)


def devices() -> Registry[DeviceSpec]:
    """The device registry (loaded once per set of device folders)."""
    return _registry(tuple(device_dirs()))


def reload_devices() -> None:
    """Forget the device files read so far, so that one just written (`ofakit latency adapt`) is found."""
    _registry.cache_clear()
    _own_file.cache_clear()
    _shipped_twin.cache_clear()


def get_device(name: str) -> DeviceSpec:
    """The device registered under `name` or an alias; raises UnknownNameError listing the known devices.

    A name that one device folder holds a file of (`<name>.yaml`) is read from that file alone, unless the registry
    is loaded already; an alias, or any other name, loads every device file (`devices()`, which also refuses a name
    or alias defined twice).
    """
    folders = tuple(device_dirs())
    if _registry.cache_info().currsize == 0:
        own = _own_file(folders, name)
        if own is not None:
            return own
    return _registry(folders).get(name)


@lru_cache(maxsize=32)
def _own_file(folders: tuple[Path, ...], name: str) -> DeviceSpec | None:
    """The device in `<name>.yaml` when exactly one of `folders` holds that file, else None."""
    if not name or name.startswith(".") or any(sep in name for sep in ("/", "\\", os.sep)):
        return None
    paths = [Path(folder) / f"{name}.yaml" for folder in folders]
    found = [path for path in paths if path.is_file()]
    return load_device(found[0]) if len(found) == 1 else None


def __getattr__(name: str) -> Any:  # `DEVICES` reads the device files on first use, not on import
    if name == "DEVICES":
        return devices()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
