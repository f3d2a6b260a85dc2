"""Draw the figures of the README and docs/ (matplotlib only): `python docs/make_figures.py` writes docs/pipeline.png.

The pipeline figure shows ofakit's stages in the order of the package tree, each with the command that runs it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent

# (stage, what it holds, the command that runs it); one box each, left to right
STAGES = (
    ("space", "kernel, expand,\ndepth, resolution", "ofakit spaces"),
    ("supernet", "shared elastic\nweights", "ofakit import-ofa"),
    ("train", "progressive\nshrinking", "ofakit train"),
    ("latency", "per-device tables\nand predictors", "ofakit profile"),
    ("predict", "accuracy from\nsubnet features", "ofakit predictor fit"),
    ("search", "best subnet\nunder a budget", "ofakit specialize"),
    ("export", "ONNX, Core ML,\nTensorRT, checked", "ofakit export"),
)


def pipeline(path: Path) -> None:
    """A row of boxes joined by arrows: stage name, a two-line description, the command under the box."""
    width, gap = 1.15, 0.3
    fig, ax = plt.subplots(figsize=(9.6, 1.9), dpi=100)
    ax.set_xlim(-0.1, len(STAGES) * (width + gap) - gap + 0.1)
    ax.set_ylim(-0.55, 1.05)
    ax.axis("off")
    for i, (name, what, command) in enumerate(STAGES):
        x = i * (width + gap)
        color = "#fde8c8" if name in ("search", "export") else "#dbe9f6"
        ax.add_patch(FancyBboxPatch((x, 0.0), width, 0.95, boxstyle="round,pad=0.02,rounding_size=0.06",
                                    facecolor=color, edgecolor="#3b5b7a", linewidth=1.0))
        ax.text(x + width / 2, 0.78, name, ha="center", va="center", fontsize=10, fontweight="bold")
        ax.text(x + width / 2, 0.36, what, ha="center", va="center", fontsize=7.5, linespacing=1.25)
        ax.text(x + width / 2, -0.22, command, ha="center", va="center", fontsize=6.5, family="monospace",
                color="#3b5b7a")
        if i:
            ax.add_patch(FancyArrowPatch((x - gap + 0.03, 0.48), (x - 0.03, 0.48), arrowstyle="-|>",
                                         mutation_scale=10, color="#3b5b7a", linewidth=1.0))
    ax.text(2.0 * (width + gap) + width / 2, -0.47, "once per supernet, and once per device", ha="center",
            fontsize=7.5, color="#3b5b7a", style="italic")
    ax.text(5.5 * (width + gap) - gap / 2, -0.47, "per device and budget: seconds, no training", ha="center",
            fontsize=7.5, color="#8a5a14", style="italic")
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else HERE
    out.mkdir(parents=True, exist_ok=True)
    pipeline(out / "pipeline.png")
    print(f"wrote {out / 'pipeline.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
