"""Op models as estimators: batches, genome rows and the additive form agree, the call overhead is paid once, the
served resolutions are checked, and the shipped Note10 model serves w1.0 and agrees with its own table."""
from __future__ import annotations

import pytest

from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.table import find_table
from ofakit.predict.op_estimator import OpModelEstimator, load_op_model
from ofakit.predict.op_model import fit_op_model
from ofakit.space import get_space
from ofakit.space.genome import Genome
from tests.predict.test_op_model import archs, synthetic_table, true_ms


def test_rows_batches_single_archs_and_the_additive_form_agree():
    model = fit_op_model(synthetic_table(overhead=0.05), spaces=("ofa-mbv3-w1.0",), resolution_range=(128, 224))
    space = get_space("ofa-mbv3-w1.0")
    est = OpModelEstimator(model, space, factor=2.5)
    batch = archs("ofa-mbv3-w1.0", 50)
    genome = Genome(space)
    rows = genome.encode(batch)
    by_rows = est.estimate_rows(genome, rows, scale=1.2)
    assert by_rows == pytest.approx(est.estimate_batch(batch, scale=1.2), rel=1e-12)
    assert by_rows[3] == pytest.approx(est.estimate(batch[3], scale=1.2), rel=1e-12)
    add = est.additive(1.2)
    assert add.scale * (add.block_sum.of_rows(genome, rows) + add.offset) == pytest.approx(by_rows, rel=1e-12)
    assert by_rows == pytest.approx(3.0 * (true_ms(batch) + 0.05), rel=1e-5)  # the call overhead paid once


def test_resolutions_outside_the_range_are_an_error_naming_it():
    model = fit_op_model(synthetic_table(), resolution_range=(160, 224))
    arch = get_space("ofa-mbv3-w1.2").smallest()
    est = OpModelEstimator(model, get_space("ofa-mbv3-w1.2"))
    with pytest.raises(LatencyLookupError, match="answers for input resolutions 160-224.*240 is outside"):
        est.estimate(type(arch)(arch.space, 240, arch.depths, arch.kernel_sizes, arch.expand_ratios))
    with pytest.raises(ConfigError, match="MBConv spaces"):
        OpModelEstimator(model, get_space("ofa-resnet50"))


def test_shipped_note10_model_serves_w10_and_agrees_with_its_table():
    table = find_table("note10", "ofa-mbv3-w1.2")
    est = load_op_model("note10", "ofa-mbv3-w1.2")
    batch = archs("ofa-mbv3-w1.2", 100)
    assert est.estimate_batch(batch) == pytest.approx(LutEstimator(table).estimate_batch(batch), rel=1e-9)
    w10 = load_op_model("note10", "ofa-mbv3-w1.0")
    assert w10.name == "op-model" and w10.table.path == table.path
    small, large = get_space("ofa-mbv3-w1.0").smallest(), get_space("ofa-mbv3-w1.0").largest()
    assert 0 < w10.estimate(small) < w10.estimate(large)
    assert w10.info["held_out"]["mape_pct"] < 5
    with pytest.raises(LatencyLookupError, match="serves spaces ofa-mbv3-w1.2, ofa-mbv3-w1.0.*not 'ofa-mbv3-cifar'"):
        load_op_model("note10", "ofa-mbv3-cifar")
