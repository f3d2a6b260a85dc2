"""Transports: the local argv of `ssh`/`scp`/`adb`, quoting that reaches the target's shell unchanged, and one error
line for each way a call fails.

Stand-ins for `ssh`, `scp` and `adb` come first on PATH: they record their argv and run the target's shell string
with `sh -c` here (or fail the way the real client does, as the environment tells them). The real clients against
a real sshd are tested in test_remote.py.
"""
from __future__ import annotations

import gc
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.transport import AdbTransport, SshTransport, transport_for
from ofakit.latency.devices import device_from_dict

# One stand-in serves as ssh, scp and adb (by its name). FAKE_FAIL makes the client itself fail: with this exit
# status and error output, or "hang".
FAKE_CLIENT = """
import json, os, shutil, subprocess, sys, time
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([name, *args]) + "\\n")
fail = os.environ.get("FAKE_FAIL", "")
if fail == "hang":
    print("connecting", flush=True)
    time.sleep(30)
if fail:
    status, message = fail.split(":", 1)
    sys.exit(print(message, file=sys.stderr) or int(status))
if name == "ssh":
    sys.exit(0 if "-O" in args else subprocess.run(["sh", "-c", args[-1]]).returncode)
if name == "scp":
    shutil.copyfile(args[-2], args[-1].split(":", 1)[1])
elif args[args.index("-s") + 2 if "-s" in args else 0] == "push":
    shutil.copyfile(args[-2], args[-1])
else:
    sys.exit(subprocess.run(["sh", "-c", args[-1]]).returncode)
"""


@pytest.fixture
def clients(tmp_path, monkeypatch):
    """The stand-in clients first on PATH; returns the list of calls made so far (each an argv)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ssh", "scp", "adb"):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{FAKE_CLIENT}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _device(**reach):
    data = {"name": "remote-test", "kind": "mobile", "reach": reach, "backend": {"name": "onnxruntime"}}
    return device_from_dict(data, "remote-test.yaml")


SSH = {"via": "ssh", "host": "me@board", "port": 2222, "identity": "~/keys/board", "options": ["LogLevel=ERROR"]}
ADB = {"via": "adb", "serial": "PHONE7"}


@pytest.fixture(params=["ssh", "adb"])
def transport(request, clients):
    return transport_for(_device(**(SSH if request.param == "ssh" else ADB)))


# -- what the target runs -------------------------------------------------------------------------------------
def test_arguments_reach_the_target_unchanged(transport):
    """Both `ssh` and `adb shell` hand the target's shell one string: every argument survives it as it was."""
    args = ["two words", "$HOME", "a;b", "it's", "*", "`id`", "-n", ""]
    out = transport.run(["printf", "%s\\n", *args], timeout=10, what="testing")
    assert out.split("\n")[:len(args)] == args


def test_ssh_argv(clients):
    transport = transport_for(_device(**SSH))
    assert isinstance(transport, SshTransport)
    transport.run(["true"], timeout=10, what="testing")
    [call] = clients()
    key = str(Path("~/keys/board").expanduser())
    assert call[0] == "ssh" and call[-2:] == ["me@board", "true"]
    options = call[1:-2]
    for pair in (["-o", "BatchMode=yes"], ["-o", "ConnectTimeout=15"], ["-p", "2222"], ["-i", key],
                 ["-o", "LogLevel=ERROR"], ["-o", "ControlMaster=auto"]):
        assert any(options[i:i + 2] == pair for i in range(len(options))), (pair, options)
    control = next(o for o in options if o.startswith("ControlPath="))
    folder = Path(control.removeprefix("ControlPath=")).parent
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700  # the sockets are private


def test_scp_argv_and_copy(clients, tmp_path):
    transport = transport_for(_device(**SSH))
    local, remote = tmp_path / "model 1.onnx", tmp_path / "remote.onnx"
    local.write_bytes(b"onnx bytes")
    transport.push(local, str(remote))
    [call] = clients()
    assert call[0] == "scp" and call[-2:] == [str(local), f"me@board:{remote}"]
    assert any(call[i:i + 2] == ["-P", "2222"] for i in range(len(call)))  # scp's port flag is -P, not -p
    assert remote.read_bytes() == b"onnx bytes"


@pytest.mark.parametrize(("reach", "shell", "push"), [
    (ADB, ["adb", "-s", "PHONE7", "shell"], ["adb", "-s", "PHONE7", "push"]),
    ({"via": "adb"}, ["adb", "shell"], ["adb", "push"]),  # the one device adb sees
])
def test_adb_argv_and_copy(clients, tmp_path, reach, shell, push):
    transport = transport_for(_device(**reach))
    assert isinstance(transport, AdbTransport)
    local, remote = tmp_path / "m.onnx", tmp_path / "on-phone.onnx"
    local.write_bytes(b"onnx bytes")
    transport.push(local, str(remote))
    transport.run(["ls", str(remote)], timeout=10, what="testing")
    assert clients() == [[*push, str(local), str(remote)], [*shell, f"ls {remote}"]]
    assert remote.read_bytes() == b"onnx bytes"


def test_remove_deletes_quoted_paths_and_is_best_effort(transport, tmp_path, monkeypatch):
    doomed = [tmp_path / "a model.onnx", tmp_path / "folder; x"]
    doomed[0].write_text("x")
    (doomed[1] / "inner").mkdir(parents=True)
    transport.remove(*map(str, doomed))
    assert not any(p.exists() for p in doomed) and (tmp_path / "bin").is_dir()
    monkeypatch.setenv("FAKE_FAIL", "255:ssh: connect to host board: No route to host")
    transport.remove(str(tmp_path / "bin"))  # the target is gone: not an error
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    transport.remove(str(tmp_path / "bin"))  # nor is a client that is gone


@pytest.mark.parametrize(("reach", "where", "workdir"), [
    (SSH, "ssh me@board port 2222", "/tmp"),
    ({"via": "ssh", "host": "board", "workdir": "/scratch/ofa"}, "ssh board", "/scratch/ofa"),
    (ADB, "adb device PHONE7", "/data/local/tmp"),
    ({"via": "adb"}, "the adb device", "/data/local/tmp"),
])
def test_where_and_workdir(reach, where, workdir):
    transport = transport_for(_device(**reach))
    assert transport.where == where and transport.workdir == workdir


def test_a_local_device_has_no_transport():
    with pytest.raises(BackendUnavailableError, match=r"^device 'remote-test' is reached 'local', not over ssh or "
                                                      r"adb$"):
        transport_for(_device(via="local"))


def test_the_ssh_control_master_is_stopped_when_the_transport_goes(clients):
    transport = transport_for(_device(**SSH))
    transport.run(["true"], timeout=10, what="testing")
    folder = Path(transport._control)
    del transport
    gc.collect()
    exit_call = clients()[-1]
    assert exit_call[0] == "ssh" and exit_call[-3:] == ["-O", "exit", "me@board"]
    assert not folder.exists()


# -- one line for each failure ---------------------------------------------------------------------------------
def test_a_tool_missing_on_the_target_is_named(transport):
    with pytest.raises(BackendUnavailableError, match=rf"^device 'remote-test': timing: 'no-such-tool-7' was not "
                                                      rf"found on {transport.where} \(exit status 127; .*no-such-tool-7"
                                                      rf".*\); fix reach.benchmark or reach.python in "
                                                      rf"remote-test.yaml$"):
        transport.run(["no-such-tool-7", "-m", "x"], timeout=10, what="timing")


def test_a_failing_command_shows_its_status_and_error_output(transport):
    with pytest.raises(BackendUnavailableError) as info:
        transport.run(["sh", "-c", "echo fine; echo model is broken >&2; exit 3"], timeout=10, what="timing")
    assert str(info.value) == (
        f"device 'remote-test': timing failed on {transport.where} (exit status 3): sh -c 'echo fine; echo model is "
        "broken >&2; exit 3'; error output: model is broken")


@pytest.mark.parametrize(("reach", "fail", "unreachable"), [
    (SSH, "255:ssh: connect to host board port 2222: Connection refused", True),
    (SSH, "1:scp: /tmp/x: Permission denied", False),
    (ADB, "1:error: device 'PHONE7' not found", True),
    (ADB, "1:error: device offline", True),
    (ADB, "1:error: device unauthorized.", True),
    ({"via": "adb"}, "1:error: no devices/emulators found", True),
    # current platform-tools prefix the program's name instead of "error:"
    (ADB, "1:adb: device 'PHONE7' not found", True),
    (ADB, "1:adb: device offline", True),
    ({"via": "adb"}, "1:adb.exe: no devices/emulators found", True),
    (ADB, "1:adb: error: failed to copy 'm.onnx': Read-only file system", False),
])
def test_an_unreachable_target_is_told_from_a_failed_call(clients, monkeypatch, tmp_path, reach, fail, unreachable):
    transport = transport_for(_device(**reach))
    (tmp_path / "m.onnx").write_text("x")
    monkeypatch.setenv("FAKE_FAIL", fail)
    message = fail.split(":", 1)[1]
    with pytest.raises(BackendUnavailableError) as info:
        transport.push(tmp_path / "m.onnx", "/remote/m.onnx")
    if unreachable:
        assert str(info.value) == (f"device 'remote-test': cannot reach {transport.where}: {message}; check that it "
                                   "is on and reachable, and reach.* in remote-test.yaml")
    else:
        assert str(info.value).startswith(f"device 'remote-test': copying the model failed on {transport.where} "
                                          f"(exit status 1): {tmp_path / 'm.onnx'} -> /remote/m.onnx; error output: "
                                          f"{message}")


def test_a_hanging_call_times_out_with_its_last_output(transport, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "hang")
    with pytest.raises(BackendUnavailableError, match=rf"^device 'remote-test': timing on {transport.where} timed "
                                                      rf"out after 0.5 s: sleep 1; last output: connecting$"):
        transport.run(["sleep", "1"], timeout=0.5, what="timing")


def test_a_missing_client_is_named(transport, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(BackendUnavailableError, match=rf"^device 'remote-test' is reached with '{transport.client}', "
                                                      r"which is not installed here \(not on PATH\)$"):
        transport.run(["true"], timeout=10, what="timing")


def test_a_missing_scp_is_named(clients, tmp_path, monkeypatch):
    """ssh is there but scp is not: the error names scp, the program that is missing."""
    only = tmp_path / "only-ssh"
    only.mkdir()
    (only / "ssh").symlink_to(tmp_path / "bin" / "ssh")
    monkeypatch.setenv("PATH", str(only))
    local = tmp_path / "m.onnx"
    local.write_bytes(b"x")
    with pytest.raises(BackendUnavailableError, match=r"^device 'remote-test' is reached with 'scp', which is not "
                                                      r"installed here \(not on PATH\)$"):
        transport_for(_device(**SSH)).push(local, "/tmp/m.onnx")


@pytest.mark.parametrize(("host", "target"), [("me@fe80::1", "me@[fe80::1]"), ("::1", "[::1]"),
                                              ("me@[::1]", "me@[::1]"), ("me@board", "me@board")])
def test_scp_puts_an_ipv6_host_in_brackets(host, target, tmp_path):
    """ssh takes a bare IPv6 address, but scp reads `me@fe80::1:/x` as host `me@fe80`: it needs the brackets."""
    transport = SshTransport(_device(via="ssh", host=host))
    assert transport._copy(tmp_path / "m.onnx", "/remote/m.onnx")[-1] == f"{target}:/remote/m.onnx"
    assert transport._shell("true")[-2] == host  # ssh itself gets the host as written
