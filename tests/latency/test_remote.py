"""Remote runners: ssh against a real sshd on 127.0.0.1 (skipped where none is installed), adb through a stand-in.

The adb tests put a fake `adb` on PATH that copies and runs locally, and a fake `onnxruntime_perf_test` that checks
its arguments and prints a recorded phone output (tests/fixtures/bench): they test the transport, the command line,
the clean-up and the error paths, not a phone; the parsers themselves are tested on recorded output in
test_bench_output.py.
"""
from __future__ import annotations

import gc
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ofakit.errors import BackendUnavailableError, BenchOutputError
from ofakit.latency.backends import RemoteBackend, backend_for, measure
from ofakit.latency.backends.remote import tool_for
from ofakit.latency.devices import device_from_dict, get_device

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "bench"
SERIAL = "FAKE7PIXEL"


def _device(reach: dict, backend: str = "onnxruntime", **settings) -> object:
    data = {"name": "remote-test", "kind": "mobile", "reach": reach,
            "backend": {"name": backend, "threads": 1, **settings}}
    return device_from_dict(data, "remote-test.yaml")


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _tiny_conv():
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())


# -- the tool a device names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("benchmark", "tool"), [
    ("/data/local/tmp/onnxruntime_perf_test", "onnxruntime_perf_test"),
    ("taskset 01 /data/local/tmp/android_aarch64_benchmark_model --use_xnnpack=true", "benchmark_model"),
])
def test_tool_is_found_after_a_prefix(benchmark, tool):
    backend = "tflite" if tool == "benchmark_model" else "onnxruntime"
    found, prefix = tool_for(_device({"via": "adb", "benchmark": benchmark}, backend))
    assert found.name == tool and prefix[-1].endswith(("onnxruntime_perf_test", "--use_xnnpack=true"))


def test_perf_test_command_line():
    backend = backend_for(_device({"via": "adb", "serial": SERIAL, "benchmark": "/d/onnxruntime_perf_test"},
                                  providers=["XnnpackExecutionProvider"]))
    assert backend.tool.command(backend.prefix, "/d/m.onnx", 7, backend.settings) == [
        "/d/onnxruntime_perf_test", "-m", "times", "-r", "7", "-e", "xnnpack", "-x", "1", "-I", "/d/m.onnx"]


@pytest.mark.parametrize(("reach", "backend", "extra", "match"), [
    ({"via": "ssh", "host": "a@b", "benchmark": "/usr/src/tensorrt/bin/trtexec"}, "tensorrt", {},
     r"reach.benchmark '/usr/src/tensorrt/bin/trtexec' names no tool ofakit reads; known: benchmark_model, "
     r"onnxruntime_perf_test \(or set reach.python"),
    ({"via": "adb", "benchmark": "/d/benchmark_model"}, "onnxruntime", {},
     r"runs backend 'onnxruntime', but its benchmark benchmark_model runs tflite models"),
    ({"via": "adb", "python": "python3"}, "tflite", {},  # the timer is named by reach.python, not reach.benchmark
     r"runs backend 'tflite', but its benchmark ofakit ort_timer.py runs onnxruntime models; fix backend.name or "
     r"reach.python in remote-test.yaml$"),
    ({"via": "adb", "benchmark": "/d/onnxruntime_perf_test"}, "onnxruntime", {"providers": ["MagicProvider"]},
     r"onnxruntime_perf_test has no `-e` name for provider 'MagicProvider'"),
    ({"via": "adb", "benchmark": "/d/onnxruntime_perf_test"}, "onnxruntime", {"precision": "fp16"},
     r"precision 'fp16'; the remote backend supports fp32"),
])
def test_unusable_remote_devices_are_named(reach, backend, extra, match):
    with pytest.raises(BackendUnavailableError, match=match):
        backend_for(_device(reach, backend, **extra))


def test_shipped_remote_devices():
    assert isinstance(backend_for(get_device("pixel7-adb")), RemoteBackend)
    with pytest.raises(BackendUnavailableError, match=r"device 'note10' uses backend 'tflite', which ofakit cannot"):
        backend_for(get_device("note10"))  # table-only: adb, but no benchmark


def test_remote_device_without_a_tool_is_named():
    with pytest.raises(BackendUnavailableError, match=r"reached over adb, but remote-test.yaml names no tool to time "
                                                      r"models there: set reach.benchmark"):
        backend_for(_device({"via": "adb", "serial": SERIAL}))


# -- adb through a stand-in -------------------------------------------------------------------------------------
FAKE_ADB = f"""
import os, shutil, subprocess, sys
args = sys.argv[1:]
serial = args[1] if args[:1] == ["-s"] else ""
args = args[2:] if serial else args
if serial != {SERIAL!r}:
    sys.exit(print(f"adb: error: device '{{serial}}' not found", file=sys.stderr) or 1)
if args[0] == "push":
    shutil.copyfile(args[1], args[2])
    print(f"{{args[1]}}: 1 file pushed, 0 skipped.")
elif args[0] == "shell":
    sys.exit(subprocess.run(["sh", "-c", args[1]]).returncode)
else:
    sys.exit(print(f"adb: unknown command {{args[0]}}", file=sys.stderr) or 1)
"""

FAKE_PERF_TEST = """
import os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PERF_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:3] != ["-m", "times", "-r"] or not os.path.isfile(args[-1]) or os.path.getsize(args[-1]) == 0:
    sys.exit(print("invalid arguments", args, file=sys.stderr) or 1)
sys.stdout.write(open(os.environ["FAKE_PERF_OUTPUT"]).read())
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """A bin folder with `adb`, `getprop` and `onnxruntime_perf_test` stand-ins first on PATH; the device folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "adb", FAKE_ADB)
    _script(bin_dir / "getprop", "print('Pixel 7 (stand-in)')\n")
    _script(bin_dir / "onnxruntime_perf_test", FAKE_PERF_TEST)
    (tmp_path / "phone").mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PERF_LOG", str(tmp_path / "perf.log"))
    monkeypatch.setenv("FAKE_PERF_OUTPUT", str(BENCH / "onnxruntime_perf_test_pixel7.txt"))
    return tmp_path


def _adb_device(root: Path, **reach) -> object:
    return _device({"via": "adb", "serial": SERIAL, "benchmark": str(root / "bin" / "onnxruntime_perf_test"),
                    "workdir": str(root / "phone"), **reach}, providers=["CPUExecutionProvider"])


def test_adb_runner_copies_runs_parses_and_cleans_up(fake_adb):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    backend = backend_for(_adb_device(fake_adb))
    env = backend.environment()
    assert env["host"] == "Pixel 7 (stand-in)" and env["reach"] == f"adb device {SERIAL}"
    assert env["tool"] == "onnxruntime_perf_test" and env["threads"] == 1
    runner = backend.load(_tiny_conv(), (1, 3, 16, 16))
    [folder] = (fake_adb / "phone").iterdir()
    assert folder.name.startswith("ofakit-") and (folder / "model1.onnx").stat().st_size > 100
    t = measure(runner, warmup=2, reps=20)
    assert t.count == 20 and 12.7315 <= t.p10 < t.median < t.p90 <= 16.1042  # spread over the recorded percentiles
    assert t.median == pytest.approx(13.0876, abs=0.05)
    calls = (fake_adb / "perf.log").read_text().splitlines()
    assert calls == [f"-m times -r {n} -e cpu -x 1 -I {folder}/model1.onnx" for n in (2, 20)]
    del runner
    gc.collect()
    assert not (folder / "model1.onnx").exists() and folder.exists()
    del backend
    gc.collect()
    assert not folder.exists()


def test_adb_wrong_serial_is_named(fake_adb):
    device = _device({"via": "adb", "serial": "NOTTHERE", "benchmark": "/d/onnxruntime_perf_test"})
    with pytest.raises(BackendUnavailableError, match=r"device 'remote-test': cannot reach adb device NOTTHERE: "
                                                      r"adb: error: device 'NOTTHERE' not found"):
        backend_for(device).environment()


def test_adb_missing_benchmark_is_named(fake_adb):
    pytest.importorskip("torch")
    runner = backend_for(_adb_device(fake_adb, benchmark="/data/local/tmp/onnxruntime_perf_test")).load(
        _tiny_conv(), (1, 3, 8, 8))
    with pytest.raises(BackendUnavailableError, match=r"'/data/local/tmp/onnxruntime_perf_test' was not found on adb "
                                                      r"device FAKE7PIXEL \(exit status 127; .*\); fix "
                                                      r"reach.benchmark or reach.python in remote-test.yaml"):
        runner.time(3)


def test_adb_garbage_output_is_named(fake_adb, monkeypatch):
    pytest.importorskip("torch")
    garbage = fake_adb / "garbage.txt"
    garbage.write_text("Session creation time cost: 0.04 s\nterminate called after throwing an instance of 'Ort'\n")
    monkeypatch.setenv("FAKE_PERF_OUTPUT", str(garbage))
    runner = backend_for(_adb_device(fake_adb)).load(_tiny_conv(), (1, 3, 8, 8))
    with pytest.raises(BenchOutputError, match=r"device 'remote-test' \(adb device FAKE7PIXEL\), command '.*"
                                               r"onnxruntime_perf_test -m times -r 3 .*': no 'Average inference time "
                                               r"cost: \.\.\. ms' line .* terminate called"):
        runner.time(3)


def test_adb_client_missing_is_named(fake_adb, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_adb / "empty"))
    with pytest.raises(BackendUnavailableError, match=r"reached with 'adb', which is not installed here"):
        backend_for(_adb_device(fake_adb)).environment()


def test_tflite_model_needs_ai_edge_torch(fake_adb):
    pytest.importorskip("torch")
    try:
        import ai_edge_torch  # noqa: F401
        pytest.skip("ai-edge-torch is installed: the error path does not apply")
    except ImportError:
        pass
    backend = backend_for(_device({"via": "adb", "serial": SERIAL, "benchmark": "/d/benchmark_model",
                                   "workdir": str(fake_adb / "phone")}, "tflite"))
    with pytest.raises(BackendUnavailableError, match=r"needs 'ai_edge_torch'.*pip install ai-edge-torch"):
        backend.load(_tiny_conv(), (1, 3, 8, 8))


# -- ssh --------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SSH_OPTIONS = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]


def test_unreachable_ssh_host_is_named(tmp_path):
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client here")
    port = _free_port()  # nothing listens there
    device = _device({"via": "ssh", "host": "nobody@127.0.0.1", "port": port, "options": SSH_OPTIONS,
                      "python": "python3"})
    with pytest.raises(BackendUnavailableError, match=rf"device 'remote-test': cannot reach ssh nobody@127.0.0.1 "
                                                      rf"port {port}: .*[Cc]onnection refused"):
        backend_for(device).environment()


def _sshd() -> str | None:
    for path in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if path and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd on 127.0.0.1 at a free port, with its own host key, accepting one generated key: (user@host, port,
    key). Skips where sshd or ssh-keygen is not installed (Debian: apt-get install openssh-server)."""
    daemon, keygen = _sshd(), shutil.which("ssh-keygen")
    if daemon is None or keygen is None or shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("sshd, ssh-keygen, ssh or scp not found (Debian: apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True, timeout=30)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        "Subsystem sftp internal-sftp", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder (Debian's package makes it at boot)
    proc = subprocess.Popen([daemon, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(root / "sshd.log", "w"))
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.skip("sshd did not listen within 15 s")
                time.sleep(0.1)
        yield f"{user}@127.0.0.1", port, root / "client_key"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ssh_runner_times_a_model_like_a_local_run(sshd, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from torch import nn

    host, port, key = sshd
    workdir = tmp_path / "remote"
    workdir.mkdir()
    device = _device({"via": "ssh", "host": host, "port": port, "identity": str(key), "options": SSH_OPTIONS,
                      "python": sys.executable, "workdir": str(workdir)}, providers=["CPUExecutionProvider"])
    backend = backend_for(device)
    env = backend.environment()
    import onnxruntime

    assert env["runtime_version"] == onnxruntime.__version__ and env["reach"] == f"ssh {host} port {port}"
    assert env["tool"] == "ofakit ort_timer.py" and env["host"]
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)).eval()
    shape = (1, 3, 56, 56)
    runner = backend.load(model, shape)
    [folder] = workdir.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["model1.onnx", "ort_timer.py"]
    local = measure(backend_for(get_device("cpu-ort")).load(model, shape), warmup=5, reps=30)
    remote = measure(runner, warmup=1, reps=30)
    assert remote.count == 30 and remote.p10 > 0
    # the same model, runtime, threads and CPU: the remote timer sees what a local run sees (generous: shared CPU)
    assert 1 / 3 < remote.median / local.median < 3, (remote, local)
    del runner
    gc.collect()
    assert sorted(p.name for p in folder.iterdir()) == ["ort_timer.py"]
    del backend
    gc.collect()
    assert not folder.exists()


@pytest.mark.slow
def test_ssh_profile_fills_a_table(sshd, tmp_path):
    """`ofakit profile` end to end over ssh: every layer of the tiny space at one resolution."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from ofakit.latency.profile import ProfileConfig, profile
    from ofakit.space import get_space

    host, port, key = sshd
    device = _device({"via": "ssh", "host": host, "port": port, "identity": str(key), "options": SSH_OPTIONS,
                      "python": sys.executable}, providers=["CPUExecutionProvider"])
    cfg = ProfileConfig(resolutions=(16,), warmup=1, reps=3, flush_every=8, reference_reps=3, overhead_reps=20)
    table = profile(device, get_space("tiny"), tmp_path / "t.json", cfg)
    assert table.meta["environment"]["reach"] == f"ssh {host} port {port}"
    entries = [e for sec in table.entries.values() for e in sec.values()]
    assert entries and all(e.p10 > 0 and e.count == cfg.reps for e in entries)
