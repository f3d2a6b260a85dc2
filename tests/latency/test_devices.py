"""Devices: every shipped YAML loads, aliases resolve, and the loader names what is wrong with a bad file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofakit.errors import ConfigError, UnknownNameError
from ofakit.latency.devices import (
    BACKEND_NAMES,
    DEVICES_PATH_ENV,
    KINDS,
    device_from_dict,
    devices,
    get_device,
    load_device,
    load_devices,
    shipped_dir,
    write_device_twin,
)

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("note10", "pixel1", "cpu-ort", "h100-tensorrt", "h100-torch", "jetson-orin-tensorrt", "iphone-coreml",
            "pixel7-adb")


def test_shipped_devices_are_registered():
    assert set(REQUIRED) <= set(devices().names())
    assert shipped_dir("devices") == ROOT / "devices"


@pytest.mark.parametrize("name", devices().names())
def test_every_device_file_is_well_formed(name):
    spec = get_device(name)
    assert spec.kind in KINDS and spec.backend.name in BACKEND_NAMES
    assert spec.description
    assert Path(spec.source).stem == name
    for alias in spec.aliases:
        assert get_device(alias) is spec
    json.dumps(spec.to_dict())  # JSON-ready


@pytest.mark.parametrize(("alias", "name"), [("pixel", "pixel1"), ("local-cpu", "cpu-ort"), ("pixel7", "pixel7-adb")])
def test_aliases(alias, name):
    assert get_device(alias).name == name


def test_local_cpu_device_runs_onnxruntime_on_one_thread():
    spec = get_device("cpu-ort")
    assert (spec.kind, spec.backend.name, spec.backend.threads, spec.reach.via) == ("cpu", "onnxruntime", 1, "local")


def test_unknown_device_lists_known_and_suggests():
    with pytest.raises(UnknownNameError, match=r"unknown device 'note1'; known: cpu-ort, .*Did you mean 'note10'\?"):
        get_device("note1")


GOOD = {"name": "x", "kind": "cpu", "backend": {"name": "onnxruntime", "threads": 2}}


@pytest.mark.parametrize(("data", "match"), [
    ({**GOOD, "colour": "red", "size": 1}, r"unknown key\(s\) 'colour', 'size'; allowed: name, aliases, kind"),
    ({**GOOD, "backend": {"name": "onnxruntime", "thread": 2}},
     r"backend: unknown key\(s\) 'thread' \(did you mean 'threads'\?\); allowed: name, threads"),
    ({**GOOD, "reach": {"via": "ssh", "hots": "a@b"}}, r"reach: unknown key\(s\) 'hots' \(did you mean 'host'\?\); allowed: via, host"),
    ({**GOOD, "kind": "tpu"}, r"kind 'tpu' is not one of cpu, gpu, mobile, npu"),
    ({**GOOD, "backend": {"name": "tensorrtt"}}, r"backend: name 'tensorrtt' is not one of onnxruntime, torch"),
    ({**GOOD, "backend": {"name": "torch", "precision": "fp8"}}, r"precision 'fp8' is not one of fp32, fp16, int8"),
    ({**GOOD, "backend": {"name": "torch", "threads": "two"}}, r"backend: threads: expected an integer, got 'two'"),
    ({**GOOD, "backend": {"name": "torch", "batch": 0}}, r"threads must be >= 0 and batch >= 1"),
    ({**GOOD, "backend": {"name": "onnxruntime", "threads": 99999999999}},
     r"backend: threads must be at most 1024, got 99999999999$"),
    ({**GOOD, "backend": "onnxruntime"}, r"backend: expected a mapping, got 'onnxruntime'"),
    ({**GOOD, "aliases": "y"}, r"aliases: expected a list, got 'y'"),
    ({"name": "x", "backend": {"name": "torch"}}, r"missing key\(s\) 'kind'"),
    ({**GOOD, "reach": {"via": "ssh"}}, r"via 'ssh' needs 'host'"),
    ({**GOOD, "reach": {"via": "ssh", "host": "-oProxyCommand=x"}}, r"host and serial must not start with '-'"),
    ({**GOOD, "reach": {"via": "ssh", "host": "a@b", "port": 70000}}, r"port must be 0 \(ssh's default\) to 65535"),
    ({**GOOD, "reach": {"via": "ssh", "host": "a@b", "port": "22"}}, r"reach: port: expected an integer, got '22'"),
    ({**GOOD, "reach": {"via": "adb", "benchmark": "/d/onnxruntime_perf_test", "python": "python3"}},
     r"give either 'benchmark' .* or 'python'"),
    ({**GOOD, "reach": {"via": "adb", "port": 22, "identity": "k"}}, r"'port', 'identity' do\(es\) not apply to "
                                                                     r"via 'adb'"),
    ({**GOOD, "reach": {"benchmark": "/usr/bin/onnxruntime_perf_test"}}, r"'benchmark' do\(es\) not apply to via "
                                                                         r"'local'"),
    ({**GOOD, "reach": {"via": "ssh", "host": "a@b", "options": "BatchMode=yes"}}, r"reach: options: expected a list"),
    ([1, 2], r"x.yaml: expected a mapping, got a list"),
    ({**GOOD, "aliases": ["y", ""]}, r"'aliases' must be a list of names"),
    ({**GOOD, "backend": {"threads": 2}}, r"backend: missing key\(s\) 'name'"),
    ({**GOOD, "source": "z"}, r"unknown key\(s\) 'source'"),
    # a command line with an unclosed quote (shlex.split's ValueError used to escape as a traceback)
    ({**GOOD, "reach": {"via": "adb", "benchmark": "/d/onnxruntime_perf_test 'x"}},
     r"x.yaml: reach: benchmark \"/d/onnxruntime_perf_test 'x\" is not a command line \(No closing quotation\)$"),
    ({**GOOD, "reach": {"via": "ssh", "host": "a@b", "python": 'python3 "-u'}},
     r"reach: python 'python3 \"-u' is not a command line \(No closing quotation\)$"),
    # mkdir/rm get '~/b' quoted (a folder named ~) while scp expands it: the copy would land elsewhere
    ({**GOOD, "reach": {"via": "ssh", "host": "a@b", "python": "python3", "workdir": "~/bench"}},
     r"reach: workdir '~/bench' starts with '~', which is not expanded on the target"),
])
def test_bad_device_data_is_named(data, match):
    with pytest.raises(ConfigError, match=match):
        device_from_dict(data, "x.yaml")


def test_ssh_reach_fields():
    spec = device_from_dict({**GOOD, "reach": {"via": "ssh", "host": "pi@rpi.local", "port": 2222, "identity": "~/k",
                                               "options": ["StrictHostKeyChecking=accept-new"],
                                               "python": "python3", "workdir": "/home/pi/tmp"}}, "x.yaml")
    assert (spec.reach.port, spec.reach.options, spec.reach.python) == (2222, ("StrictHostKeyChecking=accept-new",),
                                                                       "python3")
    assert spec.to_dict()["reach"]["options"] == ["StrictHostKeyChecking=accept-new"]


def test_name_must_match_file_name(tmp_path):
    (tmp_path / "y.yaml").write_text("name: x\nkind: cpu\nbackend: {name: torch}\n")
    with pytest.raises(ConfigError, match=r"y.yaml: name 'x' differs from the file name"):
        load_device(tmp_path / "y.yaml")


def test_malformed_yaml_is_one_line(tmp_path):
    (tmp_path / "x.yaml").write_text("name: [x\n")
    with pytest.raises(ConfigError, match=r"x.yaml: not a device file \(not YAML: ") as info:
        load_device(tmp_path / "x.yaml")
    assert "\n" not in str(info.value)


def test_alias_defined_twice_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nkind: cpu\naliases: [z]\nbackend: {name: torch}\n")
    (tmp_path / "b.yaml").write_text("name: b\nkind: cpu\naliases: [z]\nbackend: {name: torch}\n")
    with pytest.raises(ConfigError, match=r"b.yaml: device 'z' is already registered"):
        load_devices([tmp_path])


def test_user_devices_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "my-board.yaml").write_text("name: my-board\nkind: npu\nbackend: {name: onnxruntime, threads: 4}\n")
    monkeypatch.setenv(DEVICES_PATH_ENV, str(tmp_path))
    assert get_device("my-board").backend.threads == 4
    assert get_device("note10").name == "note10"  # the shipped ones stay


def test_pyproject_ships_devices_and_tables_with_the_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"share/ofakit/devices" = ["devices/*.yaml", "devices/devices.json"]' in text
    assert '"share/ofakit/latency_tables" = ["latency_tables/*.json", "latency_tables/README.md"]' in text


def test_a_file_in_the_devices_path_is_refused(tmp_path, monkeypatch):
    (tmp_path / "devices").write_text("name: x\n")
    monkeypatch.setenv(DEVICES_PATH_ENV, str(tmp_path / "devices"))
    with pytest.raises(ConfigError, match=r"devices \(in \$OFAKIT_DEVICES_PATH\) is a file; expected a folder"):
        get_device("note10")


def test_a_device_file_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "x.yaml").write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"x.yaml: not a device file \(not UTF-8 text\)$"):
        load_device(tmp_path / "x.yaml")


def test_the_twin_holds_the_shipped_files_as_yaml_reads_them(tmp_path):
    for path in shipped_dir("devices").glob("*.yaml"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    fresh = json.loads(write_device_twin(tmp_path).read_text())
    shipped = json.loads((shipped_dir("devices") / "devices.json").read_text())
    assert shipped == fresh, ("devices/devices.json is stale: run python -c 'from ofakit.latency.devices import "
                              "write_device_twin; write_device_twin()'")


def test_a_shipped_device_loads_without_pyyaml():
    import subprocess
    import sys

    code = "import sys; from ofakit.latency.devices import get_device; get_device('note10'); print('yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_a_shipped_file_unlike_its_twin_is_read_as_yaml(tmp_path, monkeypatch):
    import ofakit.latency.devices as mod

    (tmp_path / "board.yaml").write_text("name: board\nkind: npu\ndescription: the file\nbackend: {name: torch}\n")
    twin = json.loads(json.dumps(mod.device_twin(tmp_path)))
    twin["files"]["board.yaml"]["data"]["description"] = "the twin"
    (tmp_path / "devices.json").write_text(json.dumps(twin))
    monkeypatch.setattr(mod, "shipped_dir", lambda name: tmp_path)
    mod.reload_devices()
    try:
        assert load_device(tmp_path / "board.yaml").description == "the twin"  # the same text: the twin's data
        (tmp_path / "board.yaml").write_text("name: board\nkind: npu\ndescription: edited\nbackend: {name: torch}\n")
        assert load_device(tmp_path / "board.yaml").description == "edited"
    finally:
        monkeypatch.undo()
        mod.reload_devices()
