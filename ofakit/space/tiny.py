"""A two-stage MBConv space that keeps supernet, training, search and export tests to seconds on a CPU."""
from __future__ import annotations

from ofakit.space.mbconv import MBConvSpace, MBConvSpec, StageSpec
from ofakit.space.registry import SPACES


@SPACES.register("tiny")
def tiny() -> MBConvSpace:
    """Stem 8, stages of 16 (ReLU) and 24 (h-swish + SE), kernel 3/5/7, expand 2/4, depth 1/2, 10 classes."""
    return MBConvSpace(MBConvSpec(
        name="tiny", stem_width=8, stem_stride=2, stem_act="hswish",
        first_width=8, first_act="relu", first_se=False,
        stages=(StageSpec(16, 2, "relu", False, 2), StageSpec(24, 2, "hswish", True, 2)),
        head="mbv3", final_expand_width=48, last_width=64, head_act="hswish",
        kernel_choices=(3, 5, 7), expand_choices=(2, 4), depth_choices=(1, 2),
        resolutions=(16, 24, 32), num_classes=10,
    ))
