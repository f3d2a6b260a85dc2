"""LUT-sum estimator: one arch and a batch agree, the call overhead is paid once, scale multiplies."""
from __future__ import annotations

import random

import numpy as np
import pytest

from ofakit.latency.estimate import LutEstimator
from ofakit.latency.layers import plan
from ofakit.latency.table import Entry, LatencyTable, find_table, layer_key
from ofakit.space import get_space
from ofakit.space.genome import Genome


def synthetic_table(space: str, *, overhead: float = 0.0) -> LatencyTable:
    """Every layer of the space, with a latency made from its shape (so that layers differ)."""
    sp = get_space(space)
    table = LatencyTable({"device": "cpu-ort", "space": space, "call_overhead_ms": overhead})
    for r, layers in plan(sp, sp.resolutions).items():
        for layer in layers:
            h, w, c = layer.output
            ms = overhead + 1e-6 * h * w * (c + layer.mid) * max(layer.kernel, 1) + 0.001 * layer.se
            table.put(r, layer_key(layer), Entry(ms, median=ms))
    return table


@pytest.mark.parametrize("space", ["tiny", "ofa-mbv3-cifar", "ofa-mbv3-w1.0", "ofa-proxyless-w1.3"])
def test_batch_equals_one_by_one(space):
    sp = get_space(space)
    est = LutEstimator(synthetic_table(space, overhead=0.01))
    rng = random.Random(1)
    archs = [sp.sample(rng) for _ in range(300)] + [sp.largest(), sp.smallest()]
    batch = est.estimate_batch(archs, scale=1.5)
    single = np.array([est.estimate(a, scale=1.5) for a in archs])
    np.testing.assert_allclose(batch, single, rtol=1e-12)
    assert batch.dtype == np.float64 and batch.shape == (len(archs),)
    genome = Genome(sp)
    np.testing.assert_allclose(est.estimate_rows(genome, genome.encode(archs), scale=1.5), single, rtol=1e-12)


def test_call_overhead_is_paid_once():
    table = synthetic_table("tiny", overhead=0.0)
    with_overhead = synthetic_table("tiny", overhead=0.5)
    arch = get_space("tiny").largest()
    assert LutEstimator(with_overhead).estimate(arch) == pytest.approx(LutEstimator(table).estimate(arch) + 0.5)


def test_layer_breakdown_sums_to_the_estimate():
    est = LutEstimator(find_table("note10", "ofa-mbv3-w1.2"))
    arch = get_space("ofa-mbv3-w1.2").largest()
    parts = est.layer_ms(arch)
    assert [k for k, _ in parts] == [layer_key(x) for x in get_space("ofa-mbv3-w1.2").layers(arch)]
    assert sum(ms for _, ms in parts) == pytest.approx(est.estimate(arch))


def test_batch_of_archs_of_another_space_is_refused():
    from ofakit.errors import ArchError

    est = LutEstimator(synthetic_table("tiny"))
    with pytest.raises(ArchError, match=r"arch is for space 'ofa-mbv3-cifar', not 'tiny'"):
        est.estimate_batch([get_space("ofa-mbv3-cifar").largest()])


def test_a_table_estimator_is_kept_until_its_file_changes(tmp_path, monkeypatch):
    from ofakit.latency.table import TABLES_PATH_ENV
    from ofakit.predict.estimators import estimator_for

    monkeypatch.setenv(TABLES_PATH_ENV, str(tmp_path))
    table = synthetic_table("tiny")
    table.save(tmp_path / "cpu-ort_tiny.json")
    arch = get_space("tiny").largest()
    first = estimator_for("cpu-ort", "tiny")
    assert estimator_for("cpu-ort", "tiny") is first
    for section in table.entries.values():
        for key, entry in section.items():
            section[key] = Entry(2 * entry.mean, median=2 * entry.mean)
    table.save()
    second = estimator_for("cpu-ort", "tiny")
    assert second is not first
    assert second.estimate(arch) == pytest.approx(2 * first.estimate(arch))
