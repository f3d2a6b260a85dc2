"""ofakit.io: atomic writes, the one reader of user files (every way a file can be wrong is one ConfigError line
naming it), JSON lines that survive a killed writer, and output checks made before any work starts."""
from __future__ import annotations

import io
import json
import os
import pickle
from dataclasses import dataclass

import pytest

from ofakit.errors import ArchError, ConfigError
from ofakit.io import (append_jsonl, atomic_path, atomic_write_json, atomic_write_npz, atomic_write_text,
                       check_output_dir, check_output_file, read_json_file, read_jsonl, read_user_bytes,
                       read_user_file, read_user_mapped, read_yaml_file, save_text_file)
from ofakit.schema import build


# -- atomic writes --------------------------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    """Also where the writer makes the temporary file anew with its own mode (safetensors writes 0600)."""
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.txt", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_atomic_write_npz_holds_no_pickles(tmp_path):
    np = pytest.importorskip("numpy")
    atomic_write_npz(tmp_path / "a.npz", x=np.arange(3))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:
        assert data["x"].tolist() == [0, 1, 2]


def test_save_text_file_failure_is_one_line(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(ConfigError, match=r"^cannot write a table '.*f/t.json': ") as info:
        save_text_file(tmp_path / "f" / "t.json", "{}", "a table")
    assert "\n" not in str(info.value)


# -- the reader -----------------------------------------------------------------------------------------------
def test_read_user_file_returns_text_or_the_parsed_value(tmp_path):
    (tmp_path / "a.txt").write_text("héllo")
    assert read_user_file(tmp_path / "a.txt", "a note") == "héllo"
    assert read_user_file(tmp_path / "a.txt", "a note", str.upper) == "HÉLLO"


@pytest.mark.parametrize(("content", "match"), [
    (None, r"^cannot read a table '.*t\.json': No such file or directory$"),
    ("folder", r"t\.json is a folder; expected a table \(a file\)$"),
    (b"caf\xe9", r"t\.json: not a table \(not UTF-8 text\)$"),
    (bytes(range(256)), r"t\.json: not a table \(not UTF-8 text\)$"),
    (pickle.dumps({"a": 1}), r"t\.json: not a table \(not UTF-8 text\)$"),
    (b"", r"t\.json: not a table \(not JSON: Expecting value: line 1 column 1 \(char 0\)\)$"),
    (b'{"a": ', r"t\.json: not a table \(not JSON: Expecting value"),
    (b"\xef\xbb\xbf{}", r"t\.json: not a table \(not JSON: Unexpected UTF-8 BOM"),
])
def test_every_way_a_json_file_is_wrong_is_one_line_naming_it(tmp_path, content, match):
    path = tmp_path / "t.json"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        read_json_file(path, "a table")
    assert "\n" not in str(info.value)


def test_parse_errors_of_every_kind_name_the_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"a": 1}')

    def key(data):
        return data["b"]

    def arch(data):
        raise ArchError("resolution must be positive")

    with pytest.raises(ConfigError, match=r"t\.json: not a table \(KeyError: 'b'\)$"):
        read_json_file(path, "a table", build=key)
    with pytest.raises(ConfigError, match=r"t\.json: resolution must be positive$"):
        read_json_file(path, "a table", build=arch)
    with pytest.raises(ConfigError, match=r"t\.json: not a table \(TypeError: .*not subscriptable\)$"):
        read_json_file(path, "a table", build=lambda data: data["a"][0])
    with pytest.raises(ConfigError, match=r"t\.json: not a table \(ZeroDivisionError"):
        read_json_file(path, "a table", build=lambda data: 1 / 0)


def test_errors_that_are_not_about_the_file_pass_through(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{}")

    def bug(data):
        raise RuntimeError("a bug of ours, not the user's file")

    with pytest.raises(RuntimeError, match="a bug of ours"):
        read_json_file(path, "a table", build=bug)


def test_a_typed_builder_error_is_named_once(tmp_path):
    @dataclass(frozen=True)
    class Point:
        x: int

    path = tmp_path / "p.json"
    path.write_text('{"x": "1"}')
    with pytest.raises(ConfigError, match=r"^.*p\.json: x: expected an integer, got '1'$") as info:
        read_json_file(path, "a point", build=lambda data: build(Point, data, str(path)))
    assert str(info.value).count("p.json") == 1


def test_yaml_numbers_in_exponent_notation_are_numbers(tmp_path):
    """YAML 1.1 (PyYAML) wants a dot and a signed exponent; a user's file means the number either way."""
    path = tmp_path / "r.yaml"
    path.write_text("a: 1e-3\nb: 1e9\nc: 1.5e3\nd: 5.0e-4\ne: -2E2\nf: '1e5'\ng: 1e\nh: 1e400\n")
    data = read_yaml_file(path, "a recipe")
    assert data == {"a": 0.001, "b": 10 ** 9, "c": 1500.0, "d": 0.0005, "e": -200, "f": "1e5", "g": "1e",
                    "h": float("inf")}
    assert isinstance(data["b"], int) and isinstance(data["c"], float)


def test_a_yaml_key_given_twice_is_one_error_naming_it(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: 1\nb:\n  c: 1\n  c: 2\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: not a recipe \(not YAML: duplicate key 'c' \(line 4\); give each "
                                          r"key once\)$"):
        read_yaml_file(path, "a recipe")
    path.write_text("base: &b {x: 1, y: 2}\nd: {<<: *b, x: 3}\n")  # a merge key's values may be overridden
    assert read_yaml_file(path, "a recipe")["d"] == {"x": 3, "y": 2}


def test_yaml_is_read_with_the_safe_loader_only(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: [1, 2]\nb: {c: x}\n")
    assert read_yaml_file(path, "a recipe") == {"a": [1, 2], "b": {"c": "x"}}
    path.write_text(f"!!python/object/apply:os.system ['touch {tmp_path / 'marker'}']\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: not a recipe \(not YAML: could not determine a constructor"):
        read_yaml_file(path, "a recipe")
    assert not (tmp_path / "marker").exists()
    path.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: not a recipe \(not YAML: ") as info:
        read_yaml_file(path, "a recipe")
    assert "\n" not in str(info.value)


def test_stdin_is_read_for_a_dash(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO('{"a": 1}'))
    assert read_json_file("-", "an arch file") == {"a": 1}


def test_read_user_bytes_gives_bytes_and_names_the_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"\x00\xff")
    assert read_user_bytes(path, "weights", bytes.hex) == "00ff"
    with pytest.raises(ConfigError, match=r"w\.bin: not weights \(IndexError: "):
        read_user_bytes(path, "weights", lambda data: data[5])
    with pytest.raises(ConfigError, match=r"is a folder; expected weights"):
        read_user_bytes(tmp_path, "weights", bytes.hex)


def test_read_user_mapped_gives_the_path_and_names_the_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"\x00\xff")
    assert read_user_mapped(path, "weights", lambda p: p.read_bytes().hex()) == "00ff"
    with pytest.raises(ConfigError, match=r"w\.bin: not weights \(IndexError: "):
        read_user_mapped(path, "weights", lambda p: p.read_bytes()[5])
    with pytest.raises(ConfigError, match=r"is a folder; expected weights"):
        read_user_mapped(tmp_path, "weights", lambda p: p.read_bytes())
    with pytest.raises(ConfigError, match=r"cannot read weights .*gone\.bin'"):
        read_user_mapped(tmp_path / "gone.bin", "weights", lambda p: p.read_bytes())


# -- JSON lines -----------------------------------------------------------------------------------------------
def test_jsonl_skips_a_torn_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "r.jsonl"
    assert read_jsonl(path) == []  # absent: nothing yet
    append_jsonl(path, {"a": 1})
    with open(path, "a") as fh:
        fh.write('{"a": 2, "b"')  # killed mid-line
    append_jsonl(path, {"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]


def test_jsonl_append_cuts_a_torn_last_line_and_ends_a_whole_one(tmp_path):
    """What a kill leaves at the end is cut off before the next record (in the middle it would read as a mistake);
    a whole record that only lacks its newline is kept."""
    path = tmp_path / "r.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as fh:
        fh.write('{"a": 2, "b"')  # killed mid-line
    append_jsonl(path, {"a": 3})
    assert path.read_text() == '{"a": 1}\n{"a": 3}\n'
    with open(path, "a") as fh:
        fh.write('{"a": 4}')  # killed before the newline only
    append_jsonl(path, {"a": 5})
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}, {"a": 4}, {"a": 5}]
    path.write_text('{"a": 6, "b": "c' + "x" * 70_000)  # no newline at all, longer than a read-back step
    append_jsonl(path, {"a": 7})
    assert path.read_text() == '{"a": 7}\n'


def test_jsonl_line_that_is_not_json_is_an_error_unless_it_is_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 2: not a records file \(not JSON: Expecting value: line 1 "
                                          r"column 1 \(char 0\)\); fix or delete the line$"):
        read_jsonl(path, "a records file")
    assert read_jsonl(path, lenient=True) == [{"a": 1}, {"a": 3}]  # (logs of ofakit's own jobs: older torn lines)
    path.write_text('{"a": 1}\n\n{"a": 3}\nnot json\n')  # a bad last line the user ended: not a kill's
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 4: "):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n{"a": 3}\n{"a": ')  # blank lines, and a kill's torn last line
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]


def test_jsonl_builder_rejects_a_wrong_record_naming_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": "x"}\n')

    def record(data):
        if not isinstance(data["a"], int):
            raise ConfigError(f"a: expected an integer, got {data['a']!r}")
        return data["a"]

    with pytest.raises(ConfigError, match=r"r\.jsonl: line 2: a: expected an integer, got 'x'$"):
        read_jsonl(path, "a records file", build=record)
    path.write_text('{"a": 1}\n{"b": 1}\n')
    with pytest.raises(ConfigError, match=r"r\.jsonl: line 2: not a records file \(KeyError: 'a'\)$"):
        read_jsonl(path, "a records file", build=record)


@pytest.mark.parametrize(("content", "match"), [
    ("folder", r"r\.jsonl is a folder; expected a JSON lines file"),
    (b'{"a": 1}\n\xff\xfe\n', r"r\.jsonl: not a JSON lines file \(not UTF-8 text\)"),
])
def test_jsonl_that_is_not_text_is_one_line(tmp_path, content, match):
    path = tmp_path / "r.jsonl"
    if content == "folder":
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        read_jsonl(path)


# -- outputs --------------------------------------------------------------------------------------------------
def test_output_file_checks(tmp_path):
    (tmp_path / "old.onnx").write_text("x")
    (tmp_path / "pkg.mlpackage").mkdir()
    assert check_output_file(tmp_path / "new" / "m.onnx", "the model") == tmp_path / "new" / "m.onnx"
    assert not (tmp_path / "new").exists()  # nothing is created
    check_output_file(tmp_path / "old.onnx", "the model")  # overwrite allowed by default
    with pytest.raises(ConfigError, match=r"old\.onnx already exists; pass --force to replace it$"):
        check_output_file(tmp_path / "old.onnx", "the model", overwrite=False)
    with pytest.raises(ConfigError, match=r"cannot write the model to '.*pkg\.mlpackage': it is a folder$"):
        check_output_file(tmp_path / "pkg.mlpackage", "the model")
    check_output_file(tmp_path / "pkg.mlpackage", "the model", overwrite=True, folder=True)
    with pytest.raises(ConfigError, match=r"pkg\.mlpackage already exists; pass --replace to replace it$"):
        check_output_file(tmp_path / "pkg.mlpackage", "the model", overwrite=False, flag="--replace", folder=True)
    with pytest.raises(ConfigError, match=r"cannot write the model to '.*old\.onnx/a/m\.onnx': '.*old\.onnx' is not a "
                                          r"directory$"):
        check_output_file(tmp_path / "old.onnx" / "a" / "m.onnx", "the model")


def test_output_dir_checks(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d" / "report.json").mkdir(parents=True)
    assert check_output_dir(tmp_path / "new" / "run", "the results") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()
    check_output_dir(tmp_path / "d", "the results", files=("arch.json",))
    with pytest.raises(ConfigError, match=r"cannot write the results to '.*f': it is a file, not a folder$"):
        check_output_dir(tmp_path / "f", "the results")
    with pytest.raises(ConfigError, match=r"'.*f' is not a directory$"):
        check_output_dir(tmp_path / "f" / "run", "the results")
    with pytest.raises(ConfigError, match=r"cannot write the results to '.*d/report\.json': it is a folder$"):
        check_output_dir(tmp_path / "d", "the results", files=("arch.json", "report.json"))
    assert (tmp_path / "f").read_text() == "x"
