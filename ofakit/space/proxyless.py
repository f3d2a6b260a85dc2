"""ProxylessNAS-style (MobileNetV2 blocks, ReLU6, no squeeze-excite) search spaces (Cai et al., ICLR 2019)."""
from __future__ import annotations

from ofakit.space.base import make_divisible
from ofakit.space.mbconv import MBConvSpace, MBConvSpec, StageSpec
from ofakit.space.registry import SPACES

# ProxylessNAS mobile stages: (base width, stride, max depth); the last stage is one block.
_STAGES = ((24, 2, 4), (40, 2, 4), (80, 2, 4), (96, 1, 4), (192, 2, 4), (320, 1, 1))


def proxyless_spec(name: str, width_mult: float, *, expand_choices: tuple[int, ...],
                   resolutions: tuple[int, ...]) -> MBConvSpec:
    def w(base: int) -> int:
        return make_divisible(base * width_mult, 8)

    return MBConvSpec(
        name=name, stem_width=w(32), stem_stride=2, stem_act="relu6",
        first_width=w(16), first_act="relu6", first_se=False,
        stages=tuple(StageSpec(w(base), stride, "relu6", False, depth) for base, stride, depth in _STAGES),
        head="proxyless", final_expand_width=0, last_width=w(1280), head_act="relu6",
        kernel_choices=(3, 5, 7), expand_choices=expand_choices, depth_choices=(2, 3, 4),
        resolutions=resolutions, bn_eps=1e-3, bn_momentum=0.1,
    )


@SPACES.register("ofa-proxyless-w1.3")
def ofa_proxyless_w13() -> MBConvSpace:
    """MIT's OFA ProxylessNAS space at width 1.3: kernel 3/5/7, expand 3/4/6, depth 2/3/4, resolutions 128-224."""
    return MBConvSpace(proxyless_spec("ofa-proxyless-w1.3", 1.3, expand_choices=(3, 4, 6),
                                      resolutions=tuple(range(128, 225, 4))))


@SPACES.register("proxyless-mobile")
def proxyless_mobile() -> MBConvSpace:
    """ProxylessNAS mobile widths at 224: kernel 3/5/7, expand 3/6, depth 2/3/4: the Pixel 1 table's space."""
    return MBConvSpace(proxyless_spec("proxyless-mobile", 1.0, expand_choices=(3, 6), resolutions=(224,)))
