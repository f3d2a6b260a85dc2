"""Bundles that ship inside the package, and how a `--bundle` value (a name or a directory) becomes a path.

`ofa-mbv3-cifar10` is the reference bundle: a supernet of the `ofa-mbv3-cifar` space trained on CIFAR-10 with
ofakit's own progressive-shrinking recipe, its accuracy predictor and provenance (see its bundle.json). Commands that
take `--bundle` default to it. Reading this module never imports torch.
"""
from __future__ import annotations

from pathlib import Path

from ofakit.errors import BundleError

SHIPPED_DIR = Path(__file__).resolve().parent
REFERENCE = "ofa-mbv3-cifar10"


def shipped_bundles() -> dict[str, Path]:
    """Name -> directory of every bundle in the package."""
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / "bundle.json").is_file()}


def bundles_for_space(space: str) -> list[str]:
    """Names of the shipped bundles that hold a supernet of `space`."""
    from ofakit.bundle import read_bundle_info

    return [name for name, path in shipped_bundles().items() if read_bundle_info(path).space == space]


def resolve_bundle(value: str | Path | None) -> Path:
    """A bundle directory from a `--bundle` value: a directory, a shipped bundle's name, or None (the reference)."""
    shipped = shipped_bundles()
    if value is None:
        if REFERENCE not in shipped:
            raise BundleError(f"the reference bundle {REFERENCE!r} is missing from this installation "
                              f"({SHIPPED_DIR}); pass --bundle DIR (make one with `ofakit train`)")
        return shipped[REFERENCE]
    path = Path(value)
    if path.is_dir():
        return path
    if str(value) in shipped:
        return shipped[str(value)]
    if path.exists():  # a file: read_bundle_info says why it is not a bundle
        return path
    raise BundleError(f"no bundle at {str(value)!r}: not a directory, and not a shipped bundle "
                      f"(shipped: {', '.join(shipped) or 'none'}); list them with `ofakit bundle list`")
