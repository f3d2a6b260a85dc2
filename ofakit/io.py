"""Files in and out.

- Atomic writes: a temporary file in the same folder, fsync, then rename over the target.
- The one reader of every file a user hands us (`read_user_file`, `read_json_file`, `read_yaml_file`,
  `read_user_bytes`, `read_jsonl`): every way a file can be wrong becomes one ConfigError line naming the file and
  what it should have been; a typed builder (`ofakit.schema.build`) then checks its keys and types.
- Output checks (`check_output_file`, `check_output_dir`), made before a command starts its work, so that a file or
  folder in the way is one line at once rather than an error after a long search.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def open_permissions(path: str | Path) -> None:
    """Give a file the permissions open() would (0666 less the umask): mkstemp makes 0600, and so do writers that
    make their file anew (safetensors), which would leave weights unreadable to the user's group."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it.

    Readers never see a half-written file, and a crash leaves the old file (if any) in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        open_permissions(tmp_path)
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


def file_version(path: str | Path) -> tuple[str, int, int, int]:
    """What identifies a file's current content for a per-process cache: its resolved path, inode, mtime and size
    (ofakit's saves are atomic renames, so a rewritten file is a new inode)."""
    path = Path(path).resolve()
    stat = path.stat()
    return str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one JSON line and flush it, so that a killed run keeps every record written before. A last line with no
    newline after it is ended first when it is whole, and cut off when a kill tore it: left in place, a torn line
    would sit in the middle of the file, where `read_jsonl` takes a line that does not parse for a mistake."""
    with open(path, "a+b") as fh:  # appends go to the end whatever the position
        end = fh.seek(0, os.SEEK_END)
        head = b""
        if end:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                start = _last_line_start(fh, end)
                fh.seek(start)
                try:
                    json.loads(fh.read())
                    head = b"\n"
                except ValueError:  # (a JSONDecodeError, or bytes that are not UTF-8)
                    fh.truncate(start)
        fh.write(head + (json.dumps(record) + "\n").encode())
        fh.flush()


def _last_line_start(fh: Any, end: int) -> int:
    """The offset just after the last newline of the open file `fh` of `end` bytes (0 when it has none)."""
    pos = end
    while pos > 0:
        step = min(pos, 1 << 16)
        fh.seek(pos - step)
        i = fh.read(step).rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def read_jsonl(path: str | Path, what: str = "a JSON lines file", build: Callable[[Any], T] | None = None, *,
               lenient: bool = False) -> list[Any]:
    """The JSON lines of `path` ([] when absent), each through `build` when given. Blank lines are skipped, and so
    is a last line that does not parse and has no newline after it (a line torn by a killed writer); any other line
    that does not parse is one ConfigError naming the file and the line, as are a folder, an unreadable or non-UTF-8
    file and a line `build` rejects.

    Args:
        lenient: skip every line that does not parse, wherever it is: for the logs ofakit's own long jobs append to
            (training metrics, accuracy records), where an earlier `append_jsonl` ended a torn line instead of
            cutting it off, leaving it in the middle of the file when a killed run was resumed.
    """
    from ofakit.errors import ConfigError, OfakitError

    path = Path(path)
    if not path.exists():
        return []
    text = read_user_file(path, what)
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if lenient or (i == len(lines) and not text.endswith(("\n", "\r"))):
                continue
            raise ConfigError(f"{path}: line {i}: not {what} (not JSON: {exc}); fix or delete the line") from None
        if build is None:
            out.append(data)
            continue
        try:
            out.append(build(data))
        except OfakitError as exc:
            raise ConfigError(f"{path}: line {i}: {exc}") from None
        except (ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
            raise ConfigError(f"{path}: line {i}: not {what} ({_one_line(exc)})") from None
    return out


def read_user_file(path: str | Path, what: str, parse: Callable[[str], T] | None = None) -> T | str:
    """The one door for a file a user hands us: read it as UTF-8 text ('-': stdin) and parse it.

    "Missing", "a folder", "unreadable", "not UTF-8 text" and any error `parse` raises (ValueError, TypeError,
    KeyError, a YAML or JSON error, an OfakitError) become one ConfigError line that names the file and `what` it
    should be, e.g. "notes.txt: not a latency table (not JSON: Expecting value at line 1 column 1)".

    Args:
        path: the file.
        what: what the file should be, with its article: "a latency table", "an arch file".
        parse: turns the text into a value (none: the text itself).
    """
    from ofakit.errors import ConfigError

    name = str(path)
    if name == "-":
        text = sys.stdin.read()
    else:
        data = _read_bytes(Path(path), what)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{name}: not {what} (not UTF-8 text)") from None
    return text if parse is None else _parsed(name, what, parse, text)


def read_user_bytes(path: str | Path, what: str, parse: Callable[[bytes], T]) -> T:
    """As `read_user_file`, for a binary file (safetensors, a checkpoint): `parse` gets its bytes."""
    return _parsed(str(path), what, parse, _read_bytes(Path(path), what))


def read_user_mapped(path: str | Path, what: str, parse: Callable[[Path], T]) -> T:
    """As `read_user_bytes`, for a parser that reads or maps the file itself (safetensors' `load_file` copies its
    tensors once, where bytes in memory cost three copies): `parse` gets the path."""
    from ofakit.errors import ConfigError

    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(f"{path} is a folder; expected {what} (a file)")
        return _parsed(str(path), what, parse, path)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def _read_bytes(path: Path, what: str) -> bytes:
    from ofakit.errors import ConfigError

    try:
        if path.is_dir():
            raise ConfigError(f"{path} is a folder; expected {what} (a file)")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def _parsed(name: str, what: str, parse: Callable[[Any], T], data: Any) -> T:
    """`parse(data)`, with any error it raises as one ConfigError line naming the file."""
    from ofakit.errors import ConfigError, OfakitError

    try:
        return parse(data)
    except OfakitError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(name) else f"{name}: {message}") from None
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError, RecursionError, EOFError) as exc:
        raise ConfigError(f"{name}: not {what} ({_one_line(exc)})") from None
    except Exception as exc:  # a parser's own error type (yaml.YAMLError, SafetensorError, ...)
        if type(exc).__module__.split(".")[0] in _PARSER_MODULES:
            raise ConfigError(f"{name}: not {what} ({_one_line(exc)})") from None
        raise


_PARSER_MODULES = ("yaml", "json", "safetensors", "numpy", "zipfile", "pickle", "_pickle")


def _one_line(exc: BaseException) -> str:
    """The first line of an error's message; the type is named unless it is a plain ValueError (our parsers' own
    messages say what was wrong: "not JSON: ...")."""
    text = str(exc).strip().splitlines()
    if type(exc) is ValueError and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader (no Python objects; in C where PyYAML has it) with two changes, made once:

    - numbers in exponent notation that YAML 1.1 leaves as strings (`1e-3`, `5E4`, `1.5e3`; it wants a dot and a
      signed exponent) are numbers, as in YAML 1.2 and JSON: an integer when written as one (digits, no dot, an
      exponent from 0 to 18: `1e9`), a float otherwise. What YAML 1.1 already read as a number reads as before.
    - a key given twice in one mapping is an error naming it (PyYAML keeps the last one without a word).
    """
    import re

    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1}); give each key "
                        "once", key_node.start_mark)
            return super().construct_mapping(node, deep)

        def construct_exponent(self, node: Any) -> int | float:
            text = self.construct_scalar(node).replace("_", "")
            try:
                mantissa, exponent = re.split("[eE]", text)
                if "." not in mantissa and not exponent.startswith("-") and int(exponent) <= 18:
                    return int(mantissa) * 10 ** int(exponent)
                return float(text)
            except ValueError:  # only by an explicit tag: the resolver matches numbers alone
                raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a number",
                                                        node.start_mark) from None

    exponent = "tag:ofakit,2024:exponent"
    Loader.add_implicit_resolver(exponent, re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)"
                                                      r"[eE][-+]?[0-9]+$"), list("-+0123456789."))
    Loader.add_constructor(exponent, Loader.construct_exponent)
    return Loader


def load_yaml(text: str) -> Any:
    """The data of a YAML text, read as every YAML file a user hands us is (see `_yaml_loader`); raises
    yaml.YAMLError."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


def _yaml(text: str) -> Any:
    import yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {str(exc).splitlines()[0]}") from None


def read_json_file(path: str | Path, what: str = "a JSON file", build: Callable[[Any], T] | None = None) -> T | Any:
    """The JSON in a user's file ('-': stdin), through `build` when given (a typed builder that rejects unknown keys
    and wrong types); every failure is one ConfigError line naming the file (see `read_user_file`)."""
    return read_user_file(path, what, (lambda text: build(_json(text))) if build else _json)


def read_yaml_file(path: str | Path, what: str = "a YAML file", build: Callable[[Any], T] | None = None) -> T | Any:
    """As `read_json_file`, for YAML (the safe loader only: no Python objects)."""
    return read_user_file(path, what, (lambda text: build(_yaml(text))) if build else _yaml)


def save_text_file(path: str | Path, text: str, what: str) -> None:
    """`atomic_write_text`, with a failure as a one-line ConfigError naming `what` was being written."""
    from ofakit.errors import ConfigError

    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {str(path)!r}: {exc.strerror or exc}") from None


def check_output_file(path: str | Path, what: str, *, overwrite: bool = True, flag: str = "--force",
                      folder: bool = False) -> Path:
    """Check, before any work starts, that `what` can be written at `path`: no file in the way of its folder, not a
    folder (unless the output is one, `folder`: a Core ML package), and unless `overwrite` nothing there yet (`flag`
    is the option that allows replacing it). One ConfigError line otherwise; nothing is created."""
    from ofakit.errors import ConfigError

    path = Path(path)
    _check_parents(path, what)
    if path.is_dir() and not folder:
        raise ConfigError(f"cannot write {what} to {str(path)!r}: it is a folder")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ConfigError(f"{path} already exists; pass {flag} to replace it")
    return path


def check_output_dir(path: str | Path, what: str, *, files: tuple[str, ...] = ()) -> Path:
    """Check, before any work starts, that `path` is a folder or can be made one for `what`: not a file, no file in
    the way of its parents, and none of the `files` to be written into it a folder. Nothing is created."""
    from ofakit.errors import ConfigError

    path = Path(path)
    _check_parents(path, what)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write {what} to {str(path)!r}: it is a file, not a folder")
    for name in files:
        if (path / name).is_dir():
            raise ConfigError(f"cannot write {what} to {str(path / name)!r}: it is a folder")
    return path


def _check_parents(path: Path, what: str) -> None:
    """The nearest existing parent of `path` must be a folder."""
    from ofakit.errors import ConfigError

    blocker = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"cannot write {what} to {str(path)!r}: {str(blocker)!r} is not a directory")


def cache_dir() -> Path:
    """Where ofakit keeps what it can make again (decoded datasets, exported reference models): $OFAKIT_CACHE, else
    ~/.cache/ofakit."""
    return Path(os.environ.get("OFAKIT_CACHE", Path.home() / ".cache" / "ofakit"))


def read_model_file(path: str | Path, what: str, fmt: str, version: int) -> Any:
    """The JSON object of a file `what` whose "format" is `fmt` and "version" `version` (the model files ofakit
    writes); anything else is one ConfigError line naming the file."""
    from collections.abc import Mapping

    from ofakit.errors import ConfigError

    data = read_json_file(path, f"an ofakit {what}")
    if not isinstance(data, Mapping) or data.get("format") != fmt:
        raise ConfigError(f"{path}: not an ofakit {what} (expected \"format\": {fmt!r})")
    if data.get("version") != version:
        raise ConfigError(f"{path}: {what} version {data.get('version')!r} is not supported (this ofakit reads "
                          f"version {version})")
    return data

