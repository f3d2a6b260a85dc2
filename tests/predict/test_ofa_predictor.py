"""MIT's accuracy predictors imported into ofakit give MIT's predictions; unsafe files, archs of another space and
resolutions without a slot in MIT's encoding are refused.

The predictors in tests/fixtures/ofa were built and saved by MIT's own classes (randomly initialised, seeded) and
`acc_predictor_reference.json` holds MIT's predictions for 20 archs each (make_predictor_fixtures.py).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ofakit.arch import ArchConfig  # noqa: E402
from ofakit.errors import ArchError, BundleError  # noqa: E402
from ofakit.predict.accuracy import AccuracyPredictor  # noqa: E402
from ofakit.predict.ofa_predictor import (  # noqa: E402
    encode_mit,
    import_ofa_predictor,
    predictor_resolutions,
    predictor_space,
)
from ofakit.search.constraints import macs_limit  # noqa: E402
from ofakit.search.evolution import EvolutionConfig, evolve  # noqa: E402
from ofakit.space.genome import Genome  # noqa: E402
from ofakit.space import get_space  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ofa"
REFERENCE = json.loads((FIXTURES / "acc_predictor_reference.json").read_text())["layouts"]
LAYOUTS = sorted(REFERENCE)


def imported(layout: str) -> AccuracyPredictor:
    ref = REFERENCE[layout]
    return import_ofa_predictor(FIXTURES / ref["file"], ref["space"])


def archs_of(layout: str) -> list[ArchConfig]:
    return [ArchConfig.from_dict(a["arch"]) for a in REFERENCE[layout]["archs"]]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_import_predicts_as_mit(layout):
    pred = imported(layout)
    assert pred.kind == "mlp" and pred.encoding == layout
    assert pred.space == REFERENCE[layout]["space"]
    expected = np.array([a["prediction"] for a in REFERENCE[layout]["archs"]])
    np.testing.assert_allclose(pred.predict(archs_of(layout)), expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 1e-2  # the archs differ enough for the comparison to mean something


@pytest.mark.parametrize("layout", LAYOUTS)
def test_saved_predictor_predicts_the_same(layout, tmp_path):
    pred = imported(layout)
    pred.save(tmp_path)
    again = AccuracyPredictor.load(tmp_path)
    assert again.encoding == layout and again.meta["mit_resolutions"] == pred.meta["mit_resolutions"]
    archs = archs_of(layout)
    np.testing.assert_array_equal(again.predict(archs), pred.predict(archs))


def test_tutorial_encoding_layout():
    """kernel one-hots 0-59, expand one-hots 60-119, resolution slot (r - 112) // 16 at 120-127; skipped slots 0."""
    space = get_space("ofa-mbv3-w1.2")
    arch = ArchConfig("ofa-mbv3-w1.2", 176, (2, 2, 2, 2, 2), (5,) * 20, (4,) * 20)
    x = encode_mit(space, [arch], "ofa-tutorial", None)[0]
    active = [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]
    expected = np.zeros(128)
    for slot in active:
        expected[3 * slot + 1] = 1  # kernel 5 is MIT's index 1 of (3, 5, 7)
        expected[60 + 3 * slot + 1] = 1  # expand 4 is index 1 of (3, 4, 6)
    expected[120 + (176 - 112) // 16] = 1
    np.testing.assert_array_equal(x, expected)


def test_nas_encoding_puts_resolution_first():
    space = get_space("ofa-mbv3-w1.0")
    arch = ArchConfig("ofa-mbv3-w1.0", 160, (4, 2, 2, 2, 2), (7,) * 20, (6,) * 20)
    x = encode_mit(space, [arch], "ofa-nas", [128, 160, 192, 224])[0]
    assert x.shape == (124,) and x[:4].tolist() == [0, 1, 0, 0]
    assert x[4 + 3 * 3 + 2] == 1 and x[4 + 3 * 6 + 2] == 0  # slot 3 (stage 0, depth 4) kept, slot 6 (stage 1 at 2) not
    assert x.sum() == 1 + 2 * 12


def test_search_resolutions():
    tutorial, nas = imported("ofa-tutorial"), imported("ofa-nas")
    assert predictor_resolutions(tutorial, get_space("ofa-mbv3-w1.2")) == (160, 176, 192, 208, 224)
    assert predictor_resolutions(nas, get_space("ofa-mbv3-w1.0")) == tuple(range(128, 225, 4))
    space = get_space("ofa-mbv3-w1.2")
    restricted = predictor_space(tutorial, space)
    rng = random.Random(0)
    sampled = {restricted.sample(rng).resolution for _ in range(300)}
    assert sampled == {160, 176, 192, 208, 224}
    assert restricted.name == space.name and restricted.smallest().resolution == 160
    arch = space.largest()
    np.testing.assert_array_equal(restricted.encode([arch]), space.encode([arch]))
    assert get_space("ofa-mbv3-w1.2").resolutions == tuple(range(160, 225, 4))  # the registered space is unchanged


def test_evolution_only_proposes_encodable_resolutions():
    pred = imported("ofa-tutorial")
    space = get_space("ofa-mbv3-w1.2")
    genome = Genome(predictor_space(pred, space))
    result = evolve(genome, pred.for_rows(genome), [macs_limit(genome, 400e6)],
                    EvolutionConfig(population=20, generations=5), np.random.default_rng(0))
    archs = result.archs()
    assert {a.resolution for a in archs} <= {160, 176, 192, 208, 224}
    np.testing.assert_allclose(result.scores, pred.predict(archs), rtol=1e-5, atol=1e-6)  # float32 row path


# -- refused ----------------------------------------------------------------------------------------------------
class Payload:
    """Any object a pickle could carry; weights_only loading must refuse it without constructing it."""


def test_pickle_with_an_object_is_refused(tmp_path):
    path = tmp_path / "acc_predictor.pth"
    torch.save({"0.weight": torch.zeros(400, 128), "payload": Payload()}, path)
    with pytest.raises(BundleError, match="refusing to load .*weights_only"):
        import_ofa_predictor(path, "ofa-mbv3-w1.2")


def test_arch_of_another_space_is_refused():
    pred = imported("ofa-tutorial")
    arch = ArchConfig("ofa-mbv3-w1.0", 160, (2,) * 5, (3,) * 20, (3,) * 20)
    with pytest.raises(ArchError, match="arch of space 'ofa-mbv3-w1.0' given to a predictor for space "
                                        "'ofa-mbv3-w1.2'"):
        pred.predict([arch])


@pytest.mark.parametrize(("layout", "resolution", "allowed"), [
    ("ofa-tutorial", 164, "112, 128, 144, 160, 176, 192, 208, 224"),  # in the space, between MIT's slots
    ("ofa-tutorial", 240, "112, 128"),  # past the last slot (MIT's code would raise IndexError)
    ("ofa-nas", 260, "128, 132"),  # not in the encoder's image_size_list
])
def test_resolution_without_a_slot_is_refused(layout, resolution, allowed):
    pred = imported(layout)
    arch = ArchConfig(pred.space, resolution, (3,) * 5, (5,) * 20, (4,) * 20)
    with pytest.raises(ArchError, match=f"resolution {resolution} cannot be encoded by MIT's '{layout}' "
                                        f"predictor \\(it encodes: {allowed}"):
        pred.predict([arch])


def test_illegal_value_in_an_active_slot_is_refused():
    pred = imported("ofa-tutorial")
    arch = ArchConfig("ofa-mbv3-w1.2", 160, (2,) * 5, (3,) + (9,) + (3,) * 18, (3,) * 20)
    with pytest.raises(ArchError, match="kernel size 9 at block 1"):
        pred.predict([arch])
    with pytest.raises(ArchError, match="depth 5 at stage 0"):
        pred.predict([ArchConfig("ofa-mbv3-w1.2", 160, (5,) + (2,) * 4, (3,) * 20, (3,) * 20)])
    skipped = ArchConfig("ofa-mbv3-w1.2", 160, (2,) * 5, (3, 3, 9) + (3,) * 17, (3,) * 20)  # slot 2 is skipped
    assert pred.predict([skipped]).shape == (1,)


def test_not_a_predictor(tmp_path):
    path = tmp_path / "supernet.pth"
    torch.save({"first_conv.conv.weight": torch.zeros(16, 3, 3, 3)}, path)
    with pytest.raises(BundleError, match="not a MIT accuracy predictor: keys first_conv.conv.weight; expected"):
        import_ofa_predictor(path, "ofa-mbv3-w1.2")


def test_space_without_mit_layout(tmp_path):
    with pytest.raises(BundleError, match="space 'ofa-resnet50' does not have it"):
        import_ofa_predictor(FIXTURES / REFERENCE["ofa-tutorial"]["file"], "ofa-resnet50")


def test_space_with_no_encodable_resolution():
    with pytest.raises(BundleError, match="encodes none of the resolutions of space 'ofa-mbv3-cifar'"):
        import_ofa_predictor(FIXTURES / REFERENCE["ofa-tutorial"]["file"], "ofa-mbv3-cifar")


def nas_state(n_resolutions: int, hidden: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    dims = [n_resolutions + 120, hidden, hidden, hidden]
    state = {"base_acc": torch.tensor([0.7])}
    for i in range(3):
        state[f"layers.{i}.0.weight"] = torch.randn(dims[i + 1], dims[i], generator=g)
        state[f"layers.{i}.0.bias"] = torch.randn(dims[i + 1], generator=g)
    state["layers.3.weight"] = torch.randn(1, hidden, generator=g)
    return state


def test_nas_resolutions_inferred_or_given(tmp_path):
    path = tmp_path / "acc.pth"
    torch.save({"state_dict": nas_state(4)}, path)  # MIT's own loader accepts {"state_dict": ...} too
    pred = import_ofa_predictor(path, "ofa-mbv3-w1.0")
    assert pred.meta["mit_resolutions"] == [128, 160, 192, 224]
    assert predictor_resolutions(pred, get_space("ofa-mbv3-w1.0")) == (128, 160, 192, 224)

    torch.save(nas_state(3), path)
    with pytest.raises(BundleError, match="encodes 3 resolutions and MIT's file does not say which"):
        import_ofa_predictor(path, "ofa-mbv3-w1.0")
    pred = import_ofa_predictor(path, "ofa-mbv3-w1.0", resolutions=[224, 192, 160])
    a = ArchConfig("ofa-mbv3-w1.0", 192, (2,) * 5, (3,) * 20, (3,) * 20)
    assert encode_mit(get_space("ofa-mbv3-w1.0"), [a], "ofa-nas", pred.meta["mit_resolutions"])[0, :3].tolist() \
        == [0, 1, 0]
    with pytest.raises(BundleError, match="encodes 3 resolutions, but 2"):
        import_ofa_predictor(path, "ofa-mbv3-w1.0", resolutions=[224, 192])


def test_inconsistent_shapes(tmp_path):
    state = nas_state(4)
    state["layers.1.0.bias"] = torch.zeros(5)
    path = tmp_path / "acc.pth"
    torch.save(state, path)
    with pytest.raises(BundleError, match=r"bias 1 has shape \(5,\), expected \(8,\)"):
        import_ofa_predictor(path, "ofa-mbv3-w1.0")


@pytest.mark.parametrize("resolutions", [(32, 0, 28), (224, -160, 192)])
def test_resolutions_must_be_positive(tmp_path, resolutions):
    """A resolution list with 0 or a negative size is refused at import, not written for the loader to refuse."""
    path = tmp_path / "acc.pth"
    torch.save(nas_state(3), path)
    with pytest.raises(BundleError, match=r"resolutions must be positive whole numbers \(input sizes in pixels\), "
                                          rf"got {[r for r in resolutions if r < 1][0]}"):
        import_ofa_predictor(path, "ofa-mbv3-w1.0", resolutions=resolutions)
