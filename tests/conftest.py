"""Shared test setup: import this checkout's ofakit, and find the development data in ../shared when it is there."""
from __future__ import annotations

import sys
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
