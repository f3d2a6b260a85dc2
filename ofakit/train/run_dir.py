"""The run directory of `ofakit train`: what RUN_DIR/run.json records, and the checks made before any work starts
(the directory can be written, holds this recipe's run or nothing, is not being trained by another process).

    RUN_DIR/run.json         the recipe, its digest, the world size that started it, the number of training
                             images its schedule was planned on, and every resume
    RUN_DIR/train.lock       held (flock) by the process that trains, removed when it ends
    RUN_DIR/checkpoints/     see `ofakit.train.checkpoint`
    RUN_DIR/bundle/          written last: bundle.json there means the run is finished

Reading this module never imports torch.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ofakit.errors import ConfigError, OfakitError
from ofakit.io import atomic_write_json, read_json_file
from ofakit.schema import build

RUN_JSON = "run.json"
LOCK = "train.lock"


class TrainingError(OfakitError):
    """Training cannot go on (non-finite loss, a run directory that belongs to another run, ...)."""


@dataclass(frozen=True)
class Resume:
    """One restart of a run from its last checkpoint."""

    world_size: int  # processes of the restarted run
    step: int  # the checkpoint's step it went on from
    time: str  # UTC, ISO 8601


@dataclass(frozen=True)
class RunRecord:
    """RUN_DIR/run.json."""

    digest: str  # TrainConfig.digest() of the recipe that started the run
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_name: str = ""
    world_size: int = 1  # processes that started the run
    train_images: int = 0  # the training split's size, which sets the steps per epoch (0: not recorded, older runs)
    resumes: tuple[Resume, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("resumes", "train_images"):  # run.json as written before these were recorded
            if not data[key]:
                del data[key]
        return {key: data[key] for key in ("recipe", "recipe_name", "digest", "world_size", "train_images", "resumes")
                if key in data}

    def resumed(self, world_size: int, step: int) -> RunRecord:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return dataclasses.replace(self, resumes=(*self.resumes, Resume(world_size, step, now)))


def read_run_record(run_dir: Path) -> RunRecord | None:
    """RUN_DIR/run.json, or None when there is none; a malformed one is one ConfigError line naming it."""
    path = run_dir / RUN_JSON
    if not path.exists():
        return None
    return read_json_file(path, "an ofakit run record", build=lambda data: build(RunRecord, data, "run record"))


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    atomic_write_json(run_dir / RUN_JSON, record.to_dict())


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (RUN_DIR/checkpoints/step-NNNNNNNN with their state.json), oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / "state.json").is_file())


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a checkpoint folder (RUN_DIR/checkpoints/step-N, with its state.json and weights) rather
    than, say, a bundle: `init` and the tools that read weights take either."""
    path = Path(path)
    return (path / "state.json").is_file() and (path / "model.safetensors").is_file()


def checkpoint_run_record(checkpoint: str | Path, role: str = "") -> RunRecord:
    """The run record of the run a checkpoint folder belongs to (RUN_DIR/run.json two levels up), which names its
    recipe and space; one ConfigError line when that run.json is missing (naming the checkpoint after `role`, e.g.
    "init")."""
    run_dir = Path(checkpoint).parent.parent
    record = read_run_record(run_dir)
    if record is None:
        raise ConfigError(f"{role + ' ' if role else ''}{checkpoint} looks like a checkpoint, but {run_dir / RUN_JSON} is missing; give a "
                          "checkpoint folder inside its run directory, or a bundle")
    return record


def lock_holder(run_dir: Path) -> tuple[str, bool | None] | None:
    """Who holds the run directory's lock, as its holder wrote it ("pid N on HOST"), and whether that process is
    alive (None: on another host, so not known here); None when nothing holds it. Only reads: a probe of the flock
    itself could make a trainer starting at that moment fail to take it."""
    try:
        holder = (run_dir / LOCK).read_text(errors="replace").strip()
    except OSError:
        return None
    words = holder.split()
    if len(words) != 4 or words[0] != "pid" or words[2] != "on" or not words[1].isdigit():
        return (holder, None) if holder else None
    if words[3] != socket.gethostname():
        return holder, None
    try:
        os.kill(int(words[1]), 0)
    except ProcessLookupError:
        return holder, False
    except PermissionError:  # alive, another user's
        pass
    return holder, True


def is_finished(run_dir: Path) -> bool:
    """Whether the run wrote its bundle (bundle.json is the last file a run writes)."""
    return (run_dir / "bundle" / "bundle.json").is_file()


def check_out_dir(run_dir: Path) -> None:
    """Refuse an --out that is a file, or that cannot be created or written, without creating anything."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; pass a run directory (new, empty, or an earlier run's)")
    existing = run_dir
    while not existing.exists():
        if existing.is_symlink():  # a link to nothing: mkdir would fail on it
            raise ConfigError(f"cannot create run directory {run_dir}: {existing} is a symbolic link to "
                              f"{os.readlink(existing)}, which does not exist")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create run directory {run_dir}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write run directory {run_dir}: {existing} is not writable")


def check_run_dir(run_dir: Path, digest: str, recipe: dict[str, Any]) -> RunRecord | None:
    """The run record if `run_dir` holds this recipe's run, None if it is new or empty; refuse anything else."""
    check_out_dir(run_dir)
    record = read_run_record(run_dir)
    if record is not None:
        if record.digest != digest:
            changed = changed_keys(record.recipe, recipe)
            raise TrainingError(
                f"{run_dir} holds a run of another recipe (digest {record.digest}, this one {digest}"
                f"{'; it differs in ' + ', '.join(changed[:5]) if changed else ''}); "
                "resume it with its own recipe and --set values, or pass another --out")
        return record
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        raise TrainingError(f"{run_dir} is not empty and holds no ofakit run; pass an empty or new --out directory")
    return None


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipe mappings (as stored in run.json)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for key in sorted(set(old) | set(new), key=str)
                for c in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new) \
            and any(isinstance(v, dict) for v in old):
        return [c for i, (a, b) in enumerate(zip(old, new)) for c in changed_keys(a, b, f"{prefix}{i}.")]
    return [] if json.dumps(old) == json.dumps(new) else [prefix.rstrip(".")]


class RunLock:
    """An exclusive lock on a run directory (flock on RUN_DIR/train.lock), held while one process trains it.

    The kernel drops a flock when its process dies, kill -9 included, so a dead run never leaves a stale lock. The
    file is removed on release; an acquirer that locked a file removed meanwhile tries again on the new one.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise TrainingError(f"{self.path.parent} is being trained by another live process ({holder}); "
                                    "wait for it to end, or pass another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and flock: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["RunLock", "RunRecord", "Resume", "TrainingError", "changed_keys", "check_out_dir", "check_run_dir",
           "checkpoint_run_record", "is_checkpoint", "is_finished", "list_checkpoints", "lock_holder", "read_run_record", "write_run_record"]
