"""PNG figures: matplotlib (an optional extra, `ofakit[plot]`) loaded on demand with the file-only backend, and a
figure written atomically. Reading this module imports neither matplotlib nor torch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ofakit.errors import ConfigError


def pyplot(what: str = "plots") -> Any:
    """`matplotlib.pyplot` on the Agg backend; a ConfigError naming `what` and the install command when it is
    missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"{what}: matplotlib is not installed; install it with pip install 'ofakit[plot]'") from None
    return plt


def save_png(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` to `path` as a PNG (temp file, then rename) and close it."""
    from ofakit.io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return path
