"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it.

    Readers never see a half-written file, and a crash leaves the old file (if any) in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_npz(path: str | Path, *, compressed: bool = False, **arrays: Any) -> None:
    """Write NumPy arrays as an .npz (no pickled objects), atomically."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a bare temp name
            save(fh, **arrays)


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one JSON line and flush it, so that a killed run keeps every record written before."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def read_jsonl(path: str | Path) -> list[Any]:
    """The JSON lines of `path` ([] when absent); a line that does not parse (a torn last line) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_json_file(path: str | Path, what: str = "") -> Any:
    """The JSON in `path` ('-': stdin); an unreadable or malformed file is a one-line ConfigError naming `what` it
    should be."""
    import sys

    from ofakit.errors import ConfigError

    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what + ' ' if what else ''}{str(path)!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: malformed JSON: {exc}") from None


def save_text_file(path: str | Path, text: str, what: str) -> None:
    """`atomic_write_text`, with a failure as a one-line ConfigError naming `what` was being written."""
    from ofakit.errors import ConfigError

    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {str(path)!r}: {exc.strerror or exc}") from None
