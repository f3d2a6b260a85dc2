"""How the shipped reference bundle was made and what it is worth: split, package, front."""
from __future__ import annotations

import os
from pathlib import Path

DATA_HELP = "the CIFAR-10 JPEG archive (default: cifar10-jpeg.npz in $OFAKIT_SHARED_DATA, else in ../shared/data)"


def cifar10_archive() -> str:
    """The CIFAR-10 JPEG archive in the shared data folder: $OFAKIT_SHARED_DATA, else ../shared/data next to the
    repository (the development workspace's layout), never an absolute path of one machine."""
    shared = os.environ.get("OFAKIT_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return str(Path(shared) / "cifar10-jpeg.npz")
