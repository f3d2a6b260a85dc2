"""Shared setup for latency tests: run `ofakit` in-process, write small device files and tables."""
from __future__ import annotations

import pytest

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
