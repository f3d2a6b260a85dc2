"""Shared test setup: import this checkout's ofakit, and find the development data in ../shared when it is there."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n N`), share the cores out: each worker, and the processes its tests start, runs
    cores / N intra-op threads, set before anything imports torch, instead of every worker taking all cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` next to the repository; tests that need it skip in a user's clone, which has none."""
    path = ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"development data folder {path} is absent (it exists only in the ofakit dev workspace)")
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def assert_user_error(self, *fragments: str) -> str:
        """Exit code 2, one `ofakit: error:` line on stderr holding every fragment, no traceback; returns the line."""
        assert "Traceback" not in self.err, self.err
        assert self.code == 2, f"exit code {self.code}; stderr: {self.err!r}"
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {self.err!r}"
        assert lines[0].startswith("ofakit: error: "), lines[0]
        for fragment in fragments:
            assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
        return lines[0]


@pytest.fixture
def cli(capsys):
    """cli(*argv) -> CliResult of `ofakit ARGV`, run in this process (paths are turned into strings)."""

    def run(*argv: object) -> CliResult:
        capsys.readouterr()
        from ofakit.cli.main import main

        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
