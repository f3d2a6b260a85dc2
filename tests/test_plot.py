"""PNG figures: matplotlib missing is one ConfigError naming the extra; a figure is written whole (no temp file left)
and closed; `plot_fronts` (specialize --plot, the reference front) writes one."""
from __future__ import annotations

import sys

import pytest

from ofakit.errors import ConfigError
from ofakit.plot import pyplot, save_png


def test_missing_matplotlib_is_one_clear_error(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ConfigError, match=r"^--plot: matplotlib is not installed; install it with pip install "
                                          r"'ofakit\[plot\]'$"):
        pyplot("--plot")


def test_a_png_is_written_atomically_and_the_figure_closed(tmp_path):
    pytest.importorskip("matplotlib")
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_png(fig, tmp_path / "sub" / "a.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["a.png"]
    assert fig.number not in plt.get_fignums()


def test_plot_fronts(tmp_path):
    pytest.importorskip("matplotlib")
    from ofakit.search.pareto import plot_fronts

    out = plot_fronts(tmp_path / "f.png", {"a": ([1.0, 2.0], [0.5, 0.6]), "b": ([1.5], [0.55])}, xlabel="ms",
                      ylabel="top-1", title="t")
    assert out == tmp_path / "f.png" and out.read_bytes()[:4] == b"\x89PNG"
