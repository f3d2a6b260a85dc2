"""Shipped bundles: how a --bundle value resolves, and `ofakit bundle list`."""
from __future__ import annotations

import json

import pytest

from ofakit.bundles import REFERENCE, bundles_for_space, resolve_bundle, shipped_bundles
from ofakit.errors import BundleError


def test_a_directory_resolves_to_itself(tmp_path):
    (tmp_path / "b").mkdir()
    assert resolve_bundle(tmp_path / "b") == tmp_path / "b"
    assert resolve_bundle(str(tmp_path / "b")) == tmp_path / "b"


def test_an_unknown_value_names_the_shipped_bundles(tmp_path):
    with pytest.raises(BundleError, match=r"no bundle at '.*nowhere': not a directory, and not a shipped bundle "
                                          r"\(shipped: .*\); list them with `ofakit bundle list`"):
        resolve_bundle(tmp_path / "nowhere")


def test_the_reference_bundle_ships_and_is_the_default():
    shipped = shipped_bundles()
    assert REFERENCE in shipped, "the reference bundle is missing from ofakit/bundles/"
    assert resolve_bundle(None) == shipped[REFERENCE] == resolve_bundle(REFERENCE)
    info = json.loads((shipped[REFERENCE] / "bundle.json").read_text())
    assert REFERENCE in bundles_for_space(info["space"])
    assert info["weights_dtype"] == "float16"
    size = sum(p.stat().st_size for p in shipped[REFERENCE].iterdir())
    assert size <= 20 * 2**20, f"the reference bundle is {size / 2**20:.1f} MiB (limit 20 MiB)"
    for key in ("recipe", "data", "wall_time_minutes", "machine"):
        assert key in info["training"], key
    top1 = info["metrics"]["test_top1"]
    assert 0.1 < top1["smallest"] <= top1["largest"] <= 1.0


def test_bundle_list(cli):
    result = cli("bundle", "list", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [r["name"] for r in rows if r["reference"]] == [REFERENCE]
    assert cli("bundle", "list").out.count(REFERENCE) == 1
