"""The OFA MobileNetV3 search spaces (widths as in MIT's once-for-all, so its checkpoints and tables fit) and a
variant with a stride-1 stem for 32x32 CIFAR images."""
from __future__ import annotations

from ofakit.space.base import make_divisible
from ofakit.space.mbconv import MBConvSpace, MBConvSpec, StageSpec
from ofakit.space.registry import SPACES

# MobileNetV3-Large stages as OFA uses them: (base width, stride, activation, squeeze-excite)
_MBV3_STAGES = ((24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hswish", False),
                (112, 1, "hswish", True), (160, 2, "hswish", True))


def mbv3_spec(name: str, width_mult: float, resolutions: tuple[int, ...], *, num_classes: int = 1000,
              stem_stride: int = 2, stage_strides: tuple[int, ...] | None = None) -> MBConvSpec:
    """An OFA MobileNetV3 space: kernel 3/5/7, expand 3/4/6, depth 2/3/4 in 5 stages of up to 4 blocks."""

    def w(base: int) -> int:
        return make_divisible(base * width_mult, 8)

    strides = stage_strides or tuple(s for _, s, _, _ in _MBV3_STAGES)
    return MBConvSpec(
        name=name, stem_width=w(16), stem_stride=stem_stride, stem_act="hswish",
        first_width=w(16), first_act="relu", first_se=False,
        stages=tuple(StageSpec(w(base), stride, act, se, 4)
                     for (base, _, act, se), stride in zip(_MBV3_STAGES, strides)),
        head="mbv3", final_expand_width=w(960), last_width=w(1280), head_act="hswish",
        kernel_choices=(3, 5, 7), expand_choices=(3, 4, 6), depth_choices=(2, 3, 4),
        resolutions=resolutions, num_classes=num_classes, bn_eps=1e-5, bn_momentum=0.1,
    )


@SPACES.register("ofa-mbv3-w1.0")
def ofa_mbv3_w10() -> MBConvSpace:
    """OFA MobileNetV3 at width 1.0, resolutions 128-224 (step 4)."""
    return MBConvSpace(mbv3_spec("ofa-mbv3-w1.0", 1.0, tuple(range(128, 225, 4))))


@SPACES.register("ofa-mbv3-w1.2")
def ofa_mbv3_w12() -> MBConvSpace:
    """OFA MobileNetV3 at width 1.2, resolutions 160-224 (step 4): the space of the Note10 latency tables."""
    return MBConvSpace(mbv3_spec("ofa-mbv3-w1.2", 1.2, tuple(range(160, 225, 4))))


@SPACES.register("ofa-mbv3-cifar")
def ofa_mbv3_cifar() -> MBConvSpace:
    """The OFA MobileNetV3 blocks at half width for 32x32 images: stride-1 stem, total stride 8 (32x32 in, 4x4 out),
    resolutions 24-32, 10 classes. Half width (2.8-23.5 M MACs) so that a progressive-shrinking run on CIFAR-10 fits in
    90 minutes on a 2-core CPU (the shipped reference bundle)."""
    return MBConvSpace(mbv3_spec("ofa-mbv3-cifar", 0.5, (24, 28, 32), num_classes=10, stem_stride=1,
                                 stage_strides=(2, 2, 2, 1, 1)))
