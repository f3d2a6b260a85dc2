"""Shared setup for latency tests: run `ofakit` in-process, write small device files and tables."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from ofakit.cli.main import main


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
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


FAST_PROFILE = dict(resolutions=(16,), warmup=1, reps=3, flush_every=8, reference_reps=3, overhead_reps=20)


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory):
    """A real table of the tiny space at resolution 16, profiled on this CPU with few repetitions (a few seconds)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from ofakit.latency.devices import get_device
    from ofakit.latency.profile import ProfileConfig, profile
    from ofakit.space import get_space

    out = tmp_path_factory.mktemp("profile") / "cpu-ort_tiny.json"
    return profile(get_device("cpu-ort"), get_space("tiny"), out, ProfileConfig(**FAST_PROFILE))
