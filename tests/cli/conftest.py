"""Fixtures shared by the command tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A bundle of a randomly initialised tiny-space supernet (seed 0), labelled as trained on digits."""
    torch = pytest.importorskip("torch")
    from ofakit.bundle import save_bundle
    from ofakit.supernet import build_supernet

    path = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    save_bundle(path, build_supernet("tiny"), dataset="digits")
    return path
