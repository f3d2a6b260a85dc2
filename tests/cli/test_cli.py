"""`ofakit` entry point: help, version, the `spaces` listing, and that light commands never import torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ofakit import __version__
from ofakit.space import SPACES, get_space

ROOT = Path(__file__).resolve().parents[2]


def test_help(cli):
    result = cli("--help")
    assert result.code == 0
    assert "usage: ofakit" in result.out
    for command in ("spaces", "arch", "bundle", "import-ofa"):
        assert command in result.out


@pytest.mark.parametrize("command", [["spaces"], ["arch"], ["arch", "sample"], ["bundle", "info"], ["import-ofa"]])
def test_subcommand_help(cli, command):
    result = cli(*command, "--help")
    assert result.code == 0
    assert "usage: ofakit" in result.out


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"ofakit {__version__}"


def test_no_command_prints_help_and_exits_2(cli):
    result = cli()
    assert result.code == 2
    assert "usage: ofakit" in result.out
    assert "import-ofa" in result.out


def test_unknown_option_is_a_usage_error(cli):
    result = cli("spaces", "--no-such-option")
    assert result.code == 2
    assert "unrecognized arguments" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(("argv", "hint"), [
    (["specialize", "--device", "cpu-ort", "--latency", "-5ms"], "(got '-5ms': a value that begins with '-' goes "
                                                                 "after '=', --latency=-5ms)"),
    (["specialize", "--device", "cpu-ort", "--latency"], None),
], ids=["negative-value", "missing-value"])
def test_a_value_that_looks_like_an_option_is_explained(cli, argv, hint):
    result = cli(*argv)
    assert result.code == 2 and "Traceback" not in result.err
    assert "argument --latency: expected one argument" in result.err
    assert (hint in result.err) if hint else ("got" not in result.err)


def test_spaces_table_lists_every_space(cli):
    result = cli("spaces")
    assert result.code == 0
    for name in SPACES.names():
        assert name in result.out


def test_spaces_json(cli):
    result = cli("spaces", "--json")
    assert result.code == 0
    summaries = json.loads(result.out)
    assert [s["name"] for s in summaries] == list(SPACES.names())
    for s in summaries:
        assert isinstance(s["choices"], dict) and s["choices"]
        assert isinstance(s["num_architectures"], int) and s["num_architectures"] > 0
        assert s["num_architectures"] == get_space(s["name"]).num_architectures()


# -- commands that read or write small JSON files stay free of torch --------------------------------------------
def _arch_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(get_space("tiny").largest().to_json())
    return path


def _bundle_json(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bundle.json").write_text(json.dumps({"space": "tiny", "num_classes": 10}))
    return tmp_path / "b"


def _run_dir(tmp_path):
    from tests.train.test_status import _fake_run

    return _fake_run(tmp_path / "run", [{"step": 10, "stage": "a", "loss": 1.0, "lr": 0.1, "img_per_s": 100.0}])


@pytest.mark.parametrize(("argv", "code"), [
    (["--help"], 0),
    (["spaces"], 0),
    (["spaces", "--json"], 0),
    (["arch", "sample", "--space", "ofa-mbv3-w1.0", "--info"], 0),
    (["arch", "info", _arch_file], 0),
    (["bundle", "info", _bundle_json], 0),
    (["import-ofa", "--checkpoint", "x.pth", "--space", "ofa-mbv3-w1", "--out", "b"], 2),  # bad name fails first
    (["status", _run_dir], 0),
], ids=["help", "spaces", "spaces-json", "arch-sample", "arch-info", "bundle-info", "import-ofa-bad-space", "status"])
def test_light_commands_do_not_import_torch(tmp_path, argv, code):
    argv = [str(a(tmp_path)) if callable(a) else a for a in argv]
    script = (f"import sys; from ofakit.cli.main import main; code = main({argv!r}); "
              f"assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert "torch was imported" not in proc.stderr
    assert proc.returncode == code, proc.stderr


@pytest.mark.parametrize("chosen", [None, "2"])
def test_the_command_runs_numpys_blas_on_one_thread_unless_the_user_chose(chosen):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if chosen is not None:
        env["OPENBLAS_NUM_THREADS"] = chosen
    probe = ("import ofakit.cli.main, threadpoolctl; "
             "print([p['num_threads'] for p in threadpoolctl.threadpool_info() if p['internal_api'] == 'openblas'])")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    threads = json.loads(out)
    if not threads:
        pytest.skip("NumPy here is not built on OpenBLAS")
    assert threads == [int(chosen or 1)]


def test_an_error_line_reaches_stderr_in_one_write(monkeypatch, tmp_path):
    # torchrun's workers share one stderr: a line written in two parts (text, then newline) can be split by another
    # process's line, as `print` does on an unbuffered stream
    from ofakit.cli import main as cli_main

    writes: list[str] = []

    class Recorder:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Recorder())
    assert cli_main.main(["arch", "info", str(tmp_path / "missing.json")]) == 2
    errors = [w for w in writes if w.startswith("ofakit: error: ")]
    assert len(errors) == 1 and errors[0].endswith("\n") and errors[0].count("\n") == 1, writes
