"""How ofakit reaches a remote device: `ssh`/`scp` to a host, or `adb` to a phone.

A `Transport` copies a file to the target, runs a command there and removes files again. Local processes are started
with argument lists (never a local shell); the command for the target is quoted with `shlex.join`, because both
`ssh` and `adb shell` hand the target's shell one string. Every failure is a `BackendUnavailableError` that names
the device, the host or serial, the command and the tail of its error output.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from ofakit.errors import BackendUnavailableError
from ofakit.latency.backends.bench_output import tail
from ofakit.latency.devices import DeviceSpec

CONNECT_TIMEOUT_S = 15  # ssh's ConnectTimeout
COPY_TIMEOUT_S = 120  # one copy or clean-up
NOT_FOUND = 127  # the exit status of a POSIX shell for a command it cannot find
# adb's own errors when the phone is not there: "error: device 'X' not found", "error: no devices/emulators found"
# from older clients; "adb: device 'X' not found", "adb: no devices/emulators found" (adb.exe on Windows) from newer
ADB_UNREACHABLE = re.compile(r"(?:error|adb(?:\.exe)?): (?:device '[^']*' not found|no devices|device offline|"
                             r"device unauthorized|device still authorizing)")


class Transport(ABC):
    """Runs commands on, and copies files to, one remote device."""

    client: str  # the local program: ssh or adb
    default_workdir: str  # where copied models go when the device file names no workdir

    def __init__(self, device: DeviceSpec) -> None:
        self.device = device
        self.reach = device.reach
        self.workdir = device.reach.workdir or self.default_workdir

    @property
    @abstractmethod
    def where(self) -> str:
        """The target in words, for messages and the table's environment: 'ssh user@host', 'adb device SERIAL'."""

    @abstractmethod
    def _shell(self, command: str) -> list[str]:
        """The local argv that runs the shell string `command` on the target."""

    @abstractmethod
    def _copy(self, local: Path, remote: str) -> list[str]:
        """The local argv that copies `local` to the path `remote` on the target."""

    def _connection_failed(self, proc: subprocess.CompletedProcess) -> bool:
        """Whether a failed call failed to reach the target at all (rather than in the command run there)."""
        return False

    def run(self, argv: Sequence[str], *, timeout: float, what: str) -> str:
        """Run `argv` on the target; its stdout and stderr (tools log to either), or an error naming the target."""
        command = shlex.join(argv)
        proc = self._call(self._shell(command), timeout=timeout, what=what, shown=command)
        if proc.returncode == NOT_FOUND:
            raise BackendUnavailableError(
                f"device {self.device.name!r}: {what}: {argv[0]!r} was not found on {self.where} (exit status 127; "
                f"{tail(proc.stderr + proc.stdout)}); fix reach.benchmark or reach.python in {self.device.source}")
        if proc.returncode != 0:
            raise self._failure(proc, what, command)
        return proc.stdout + "\n" + proc.stderr

    def push(self, local: Path, remote: str) -> None:
        """Copy the local file to `remote` on the target."""
        proc = self._call(self._copy(local, remote), timeout=COPY_TIMEOUT_S, what="copying the model",
                          shown=f"{local} -> {remote}")
        if proc.returncode != 0:
            raise self._failure(proc, "copying the model", f"{local} -> {remote}")

    def remove(self, *remote: str) -> None:
        """Delete files or folders on the target; best effort (a target gone by now is not an error)."""
        try:
            subprocess.run(self._shell(shlex.join(["rm", "-rf", "--", *remote])), capture_output=True,
                           timeout=COPY_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.SubprocessError):
            pass

    def _call(self, cmd: list[str], *, timeout: float, what: str, shown: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:  # the client itself (ssh, scp or adb), not a file on the target
            raise BackendUnavailableError(
                f"device {self.device.name!r} is reached with {cmd[0]!r}, which is not installed here "
                f"(not on PATH)") from None
        except subprocess.TimeoutExpired as exc:
            out = (exc.stderr or b"") + (exc.stdout or b"")
            text = out.decode(errors="replace") if isinstance(out, bytes) else out
            raise BackendUnavailableError(
                f"device {self.device.name!r}: {what} on {self.where} timed out after {timeout:g} s: {shown}; "
                f"last output: {tail(text)}") from None

    def _failure(self, proc: subprocess.CompletedProcess, what: str, shown: str) -> BackendUnavailableError:
        if self._connection_failed(proc):
            return BackendUnavailableError(
                f"device {self.device.name!r}: cannot reach {self.where}: {tail(proc.stderr)}; check that it is on "
                f"and reachable, and reach.* in {self.device.source}")
        return BackendUnavailableError(
            f"device {self.device.name!r}: {what} failed on {self.where} (exit status {proc.returncode}): {shown}; "
            f"error output: {tail(proc.stderr or proc.stdout)}")


class SshTransport(Transport):
    """`ssh` runs commands and `scp` copies, non-interactively (BatchMode: a key, never a password prompt).

    The calls share one connection (an ssh control master whose socket lives in a private local temporary folder),
    so a copy or a command costs a round trip, not a handshake; the master is stopped and the folder removed when
    the transport is garbage-collected or Python exits.
    """

    client = "ssh"
    default_workdir = "/tmp"

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        self._control = tempfile.mkdtemp(prefix="ofakit-ssh-")
        weakref.finalize(self, _stop_master, self._shell_argv("-O", "exit"), self._control)

    @property
    def where(self) -> str:
        return f"ssh {self.reach.host}" + (f" port {self.reach.port}" if self.reach.port else "")

    def _options(self, port_flag: str) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        if self.reach.port:
            opts += [port_flag, str(self.reach.port)]
        if self.reach.identity:
            opts += ["-i", str(Path(self.reach.identity).expanduser())]
        for option in self.reach.options:
            opts += ["-o", option]
        return [*opts, "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C", "-o",
                f"ControlPersist={COPY_TIMEOUT_S}"]

    def _shell_argv(self, *args: str) -> list[str]:
        return ["ssh", *self._options("-p"), *args, self.reach.host]

    def _shell(self, command: str) -> list[str]:
        return [*self._shell_argv(), command]

    def _copy(self, local: Path, remote: str) -> list[str]:
        # scp splits HOST:PATH at the first colon outside brackets, so an IPv6 address must be in brackets
        user, at, name = self.reach.host.rpartition("@")
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        return ["scp", "-q", *self._options("-P"), str(local), f"{user}{at}{name}:{remote}"]

    def _connection_failed(self, proc: subprocess.CompletedProcess) -> bool:
        return proc.returncode == 255  # ssh's own failures (refused, unknown host, key rejected)


class AdbTransport(Transport):
    """`adb push` copies and `adb shell` runs commands, on the device with the given serial."""

    client = "adb"
    default_workdir = "/data/local/tmp"

    @property
    def where(self) -> str:
        return f"adb device {self.reach.serial}" if self.reach.serial else "the adb device"

    def _adb(self) -> list[str]:
        return ["adb", "-s", self.reach.serial] if self.reach.serial else ["adb"]

    def _shell(self, command: str) -> list[str]:
        return [*self._adb(), "shell", command]

    def _copy(self, local: Path, remote: str) -> list[str]:
        return [*self._adb(), "push", str(local), remote]

    def _connection_failed(self, proc: subprocess.CompletedProcess) -> bool:
        return proc.returncode != 0 and ADB_UNREACHABLE.search(proc.stderr + proc.stdout) is not None


def _stop_master(exit_argv: list[str], control: str) -> None:
    try:
        subprocess.run(exit_argv, capture_output=True, timeout=CONNECT_TIMEOUT_S, stdin=subprocess.DEVNULL,
                       check=False)
    except (OSError, subprocess.SubprocessError):
        pass
    shutil.rmtree(control, ignore_errors=True)


def transport_for(device: DeviceSpec) -> Transport:
    """The transport of a device reached over ssh or adb."""
    if device.reach.via == "ssh":
        return SshTransport(device)
    if device.reach.via == "adb":
        return AdbTransport(device)
    raise BackendUnavailableError(f"device {device.name!r} is reached {device.reach.via!r}, not over ssh or adb")
