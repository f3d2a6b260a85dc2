"""Parity checks: the bounds per precision, the random inputs, and that a mismatch stops the export."""
from __future__ import annotations

import numpy as np
import pytest

from ofakit.export.formats import ArtifactSpec, ExportError
from ofakit.export.verify import check, compare, compare_images, not_compared, random_inputs, tolerance


def _linear(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)[:, :10] * 3.0


def test_random_inputs_cover_fixed_and_dynamic_batches():
    fixed = random_inputs(ArtifactSpec(resolution=8, batch=2))
    assert [x.shape for x in fixed] == [(2, 3, 8, 8)] * 4
    dynamic = random_inputs(ArtifactSpec(resolution=8, batch=None))
    assert [len(x) for x in dynamic] == [1, 3, 4]
    assert all(x.dtype == np.float32 for x in dynamic)
    np.testing.assert_array_equal(random_inputs(ArtifactSpec(resolution=8), seed=3)[0],
                                  random_inputs(ArtifactSpec(resolution=8), seed=3)[0])


def test_identical_outputs_pass():
    parity = compare(_linear, _linear, random_inputs(ArtifactSpec(resolution=8, batch=2)), precision="fp32",
                     runtime="same")
    assert parity.passed and parity.max_abs_diff == 0.0 and parity.top1_agreement == 1.0
    assert parity.random_inputs == 8 and parity.output_scale > 1
    check(parity)


def test_fp32_bound_is_1e_4():
    assert tolerance("fp32", 1000.0) == 1e-4
    off = compare(_linear, lambda x: _linear(x) + 2e-4, random_inputs(ArtifactSpec(resolution=8)), precision="fp32",
                  runtime="shifted")
    assert not off.passed
    with pytest.raises(ExportError, match=r"does not match PyTorch: shifted vs PyTorch .* max abs diff 2\.0\de-04"):
        check(off)


def test_fp32_bound_widens_to_twice_pytorchs_own_error():
    assert tolerance("fp32", 5.0, pytorch_fp32_error=3e-5) == 1e-4
    assert tolerance("fp32", 5.0, pytorch_fp32_error=3e-4) == pytest.approx(6e-4)
    inputs = random_inputs(ArtifactSpec(resolution=8))
    parity = compare(_linear, lambda x: _linear(x) + 2e-4, inputs, precision="fp32", runtime="shifted",
                     exact=lambda x: _linear(x).astype(np.float64) + 1.5e-4)
    assert parity.pytorch_fp32_error == pytest.approx(1.5e-4, rel=1e-3)
    assert parity.tolerance == pytest.approx(3e-4, rel=1e-3) and parity.passed
    assert "PyTorch fp32 vs fp64: 1.5e-04" in parity.summary()


def test_fp16_bound_scales_with_the_logits():
    assert tolerance("fp16", 0.5) == pytest.approx(0.05)
    assert tolerance("fp16", 40.0) == pytest.approx(2.0)


def _int8(candidate, images=None):  # noqa: ANN001, ANN202
    parity = compare(_linear, candidate, random_inputs(ArtifactSpec(resolution=8)), precision="int8", runtime="int8")
    if images is not None:
        parity.images = compare_images(_linear, candidate, images, source="eye", labels_are_classes=True)
    return parity


def test_int8_has_no_logit_bound_but_real_images_must_agree():
    assert tolerance("int8", 40.0) is None
    eye = [(np.eye(10, 192, dtype=np.float32).reshape(10, 3, 8, 8) * (1 + np.arange(10))[:, None, None, None],
            np.arange(10))]
    scaled = _int8(lambda x: _linear(x) * 0.7 + 0.3, eye)  # far off in logits, same classes
    assert scaled.passed and scaled.max_abs_diff > 1 and scaled.image_agreement == 1.0
    negated = _int8(lambda x: -_linear(x), eye)  # every class wrong
    assert not negated.passed and negated.image_agreement == 0.0
    with pytest.raises(ExportError, match=r"real images must agree on >= 90% .* 10 real images: top-1 agreement 0\.0%"):
        check(negated)
    one_off = [(eye[0][0][:9], eye[0][1][:9])]  # 8 of 9 agree: 88.9 % < 90 %
    shuffled = _int8(lambda x: np.where(np.arange(len(x))[:, None] == 0, -_linear(x), _linear(x)), one_off)
    assert shuffled.image_agreement == pytest.approx(8 / 9) and not shuffled.passed
    unchecked = _int8(_linear)  # no real images: nothing shows the classes agree
    assert not unchecked.passed


def test_a_split_without_one_whole_batch_is_said_not_compared():
    parity = compare(_linear, _linear, random_inputs(ArtifactSpec(resolution=8)), precision="fp32", runtime="same")
    parity.images = compare_images(_linear, _linear, [], source="few", labels_are_classes=True)
    parity.images["note"] = "3 validation image(s) of few, fewer than one batch of 32"
    assert parity.passed and parity.image_agreement is None
    assert parity.summary().endswith("; no real images compared (3 validation image(s) of few, fewer than one batch "
                                     "of 32)")


def test_dynamic_random_inputs_stay_within_max_batch():
    for max_batch, sizes in ((2, [1, 2, 2, 2, 2]), (3, [1, 3, 3, 3]), (64, [1, 3, 4])):
        assert [len(x) for x in random_inputs(ArtifactSpec(resolution=8, batch=None, max_batch=max_batch))] == sizes


def test_shape_mismatch_is_an_export_error():
    with pytest.raises(ExportError, match=r"returned logits of shape \(2, 5\); PyTorch gives \(2, 10\)"):
        compare(_linear, lambda x: _linear(x)[:, :5], random_inputs(ArtifactSpec(resolution=8, batch=2)),
                precision="fp32", runtime="cut")


def test_top1_agreement_and_accuracy_on_images():
    images = [(np.eye(10, 192, dtype=np.float32).reshape(10, 3, 8, 8), np.arange(10))]
    result = compare_images(_linear, _linear, images, source="eye", labels_are_classes=True)
    assert result == {"source": "eye", "split": "val", "images": 10, "top1_agreement": 1.0, "pytorch_top1": 1.0,
                      "artifact_top1": 1.0}
    assert "pytorch_top1" not in compare_images(_linear, _linear, images, source="eye", labels_are_classes=False)


def test_not_compared_passes_and_says_why():
    parity = not_compared("Core ML (macOS)", "fp16", "outputs not compared: Core ML predicts only on macOS")
    assert parity.passed and not parity.compared
    assert parity.to_dict()["note"].startswith("outputs not compared")
    assert parity.summary() == "outputs not compared: Core ML predicts only on macOS"
