"""Convert between MIT once-for-all's `net.config` of a static subnet and ArchConfig.

MIT publishes each specialized net as a `net.config` JSON (MobileNetV3 or ProxylessNASNets) plus an input size.
`arch_from_ofa_config` reads one (the blocks are grouped into stages by width), `ofa_config_from_arch` writes the same
dict back, so users can move between the two tools without retyping architectures.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError
from ofakit.space import get_space
from ofakit.space.mbconv import MBConvSpace, mid_channels

_ACT_TO_OFA = {"relu": "relu", "relu6": "relu6", "hswish": "h_swish"}
_NETS = {"MobileNetV3": "mbv3", "ProxylessNASNets": "proxyless"}


def _mbconv_spaces() -> list[MBConvSpace]:
    from ofakit.space import SPACES

    return [sp for name in SPACES.names() if isinstance(sp := get_space(name), MBConvSpace)]


def _block_conv(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """The MBConv layer of a block: `mobile_inverted_conv` in MIT's 2020 net.config, `conv` in later releases."""
    conv = block.get("mobile_inverted_conv") or block.get("conv")
    if conv is None:
        raise KeyError("mobile_inverted_conv")
    return conv


def guess_space(net_config: Mapping[str, Any]) -> str:
    """The MBConv space whose head type and stem width match a MIT net.config."""
    name = net_config.get("name")
    if name not in _NETS:
        raise ArchError(f"net config of type {name!r} is not supported; supported: {', '.join(_NETS)}")
    try:
        stem = net_config["first_conv"]["out_channels"]
        first = _block_conv(net_config["blocks"][0])["out_channels"]
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ArchError("net config lacks first_conv.out_channels or blocks[0]; is it MIT's net.config?") from None
    for sp in _mbconv_spaces():
        s = sp.spec
        if s.head == _NETS[name] and s.stem_width == stem and s.first_width == first and s.num_classes == 1000:
            return sp.name
    raise ArchError(f"no ofakit space has a {name} with a {stem}-channel stem and a {first}-channel first block; "
                    "pass --space explicitly")


def arch_from_ofa_config(net_config: Mapping[str, Any], image_size: int, space: str | None = None) -> ArchConfig:
    """The ArchConfig of a MIT net.config; skipped block slots are filled with the smallest choices."""
    sp = get_space(space or guess_space(net_config))
    if not isinstance(sp, MBConvSpace):
        raise ArchError(f"space {sp.name!r} is not a MobileNet space; net configs describe MobileNetV3/ProxylessNAS")
    s = sp.spec
    try:
        convs = [_block_conv(b) for b in net_config["blocks"]]
        stem = net_config["first_conv"]["out_channels"]
    except (KeyError, TypeError, AttributeError):
        raise ArchError("net config lacks 'blocks' or 'first_conv'; is it MIT's net.config?") from None
    if not convs:
        raise ArchError("net config has no blocks; is it MIT's net.config of a subnet?")
    for index, conv in enumerate(convs):
        keys = ("out_channels",) if index == 0 else ("out_channels", "kernel_size", "expand_ratio")
        if not isinstance(conv, Mapping) or any(key not in conv for key in keys):
            lacking = [key for key in keys if not isinstance(conv, Mapping) or key not in conv]
            raise ArchError(f"net config block {index}'s MBConv layer lacks {', '.join(lacking)}; "
                            "is it MIT's net.config of a subnet?")
    if stem != s.stem_width or convs[0]["out_channels"] != s.first_width:
        raise ArchError(f"net config has a {stem}-channel stem and a {convs[0]['out_channels']}-channel first block; "
                        f"space {sp.name!r} has {s.stem_width} and {s.first_width}")
    kernels = [min(s.kernel_choices)] * sp.num_slots
    expands: list[float] = [min(s.expand_choices)] * sp.num_slots
    depths = []
    rest = convs[1:]
    for stage, slots in zip(s.stages, sp.stage_slots):
        depth = 0
        while rest and rest[0]["out_channels"] == stage.width and depth < stage.max_depth:
            kernels[slots[depth]] = rest[0]["kernel_size"]
            expands[slots[depth]] = rest[0]["expand_ratio"]
            rest = rest[1:]
            depth += 1
        depths.append(depth)
    if rest:
        raise ArchError(f"net config has {len(rest)} block(s) that do not fit the stages of space {sp.name!r}")
    arch = ArchConfig(sp.name, int(image_size), tuple(depths), tuple(kernels), tuple(expands))
    sp.validate(arch)
    return arch


def _conv_layer(cin: int, cout: int, kernel: int, stride: int, act: str | None, use_bn: bool) -> dict[str, Any]:
    return {"act_func": act, "bias": False, "dilation": 1, "dropout_rate": 0, "groups": 1, "has_shuffle": False,
            "in_channels": cin, "kernel_size": kernel, "name": "ConvLayer", "ops_order": "weight_bn_act",
            "out_channels": cout, "stride": stride, "use_bn": use_bn}


def ofa_config_from_arch(arch: ArchConfig, *, dropout_rate: float = 0.0,
                         bn: Mapping[str, float] | None = None) -> dict[str, Any]:
    """MIT's net.config of the static subnet `arch` (the inverse of `arch_from_ofa_config`)."""
    sp = get_space(arch.space)
    if not isinstance(sp, MBConvSpace):
        raise ArchError(f"space {sp.name!r} has no MIT net.config form")
    sp.validate(arch)
    s = sp.spec
    blocks = []
    for layer in sp.layers(arch):
        if layer.op != "mbconv":
            continue
        (_, _, cin), (_, _, cout) = layer.input, layer.output
        first = not blocks
        blocks.append({
            "mobile_inverted_conv": {
                "act_func": _ACT_TO_OFA[layer.act], "expand_ratio": 1 if first else None,
                "in_channels": cin, "kernel_size": layer.kernel, "mid_channels": None if first else layer.mid,
                "name": "MBInvertedConvLayer", "out_channels": cout, "stride": layer.stride, "use_se": layer.se,
            },
            "name": "MobileInvertedResidualBlock",
            "shortcut": {"act_func": None, "dropout_rate": 0, "in_channels": [cin], "name": "IdentityLayer",
                         "ops_order": "weight_bn_act", "out_channels": [cout], "use_bn": False}
            if layer.skip else None,
        })
    for slot, block in zip(sp.active_slots(arch), blocks[1:]):
        block["mobile_inverted_conv"]["expand_ratio"] = arch.expand_ratios[slot]
        assert block["mobile_inverted_conv"]["mid_channels"] == mid_channels(
            block["mobile_inverted_conv"]["in_channels"], arch.expand_ratios[slot])
    last_in = blocks[-1]["mobile_inverted_conv"]["out_channels"]
    config: dict[str, Any] = {
        "name": "MobileNetV3" if s.head == "mbv3" else "ProxylessNASNets",
        "bn": dict(bn) if bn is not None else {"eps": s.bn_eps, "momentum": s.bn_momentum},
        "first_conv": _conv_layer(3, s.stem_width, 3, s.stem_stride, _ACT_TO_OFA[s.stem_act], True),
        "blocks": blocks,
        "classifier": {"act_func": None, "bias": True, "dropout_rate": dropout_rate, "in_features": s.last_width,
                       "name": "LinearLayer", "ops_order": "weight_bn_act", "out_features": s.num_classes,
                       "use_bn": False},
    }
    act = _ACT_TO_OFA[s.head_act]
    if s.head == "mbv3":
        config["final_expand_layer"] = _conv_layer(last_in, s.final_expand_width, 1, 1, act, True)
        config["feature_mix_layer"] = _conv_layer(s.final_expand_width, s.last_width, 1, 1, act, False)
    else:
        config["feature_mix_layer"] = _conv_layer(last_in, s.last_width, 1, 1, act, True)
    return config


def arch_from_ofa_args(space: str, resolution: int, *, ks: list[int] | None = None, e: list[float] | None = None,
                       d: list[int] | None = None, w: list[int] | None = None) -> ArchConfig:
    """The ArchConfig that MIT's `set_active_subnet(ks=..., e=..., d=..., w=...)` selects.

    For MBConv spaces `ks` and `e` have one value per block slot and `d` one per stage (MIT clamps a stage's depth to
    its number of blocks, e.g. the single-block last stage of ProxylessNAS). For ResNet, `d` has the stem plus one
    per stage, `e` one per block slot, and `w` holds indices into the width-multiplier choices.
    """
    sp = get_space(space)
    if isinstance(sp, MBConvSpace):
        if ks is None or e is None or d is None:
            raise ArchError(f"space {sp.name!r} needs ks, e and d")
        depths = tuple(min(int(x), st.max_depth) for x, st in zip(d, sp.spec.stages))
        arch = ArchConfig(sp.name, int(resolution), depths, tuple(ks), tuple(e))
    else:
        if e is None or d is None or w is None:
            raise ArchError(f"space {sp.name!r} needs d, e and w")
        choices = sp.spec.width_choices
        if any(not 0 <= i < len(choices) for i in w):
            raise ArchError(f"width indices {list(w)} out of range for choices {list(choices)}")
        arch = ArchConfig(sp.name, int(resolution), tuple(d), expand_ratios=tuple(e),
                          width_mults=tuple(choices[i] for i in w))
    sp.validate(arch)
    return arch
