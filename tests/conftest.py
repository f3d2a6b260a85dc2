"""Shared test setup: import this checkout's ofakit, and find the development data in ../shared when it is there."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
