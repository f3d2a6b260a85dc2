"""One layer of a subnet as a standalone `torch.nn` model, built from the blocks extracted subnets are made of
(`ofakit.supernet.static`), so that a runtime sees each layer as it sees it inside a whole network.

Weights are random (latency does not depend on their values); models are in eval mode, where ONNX Runtime and
TensorRT fold batch norm into the conv before it, as they do in a whole network.
"""
from __future__ import annotations

from torch import nn

from ofakit.space import LayerShape
from ofakit.space.mbconv import se_channels
from ofakit.supernet.static import Bottleneck, InvertedResidual, ResidualConv, SqueezeExcite, make_activation


def _conv_bn(cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1, act: str = "",
             bn: bool = True) -> nn.Sequential:
    parts: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not bn)]
    if bn:
        parts.append(nn.BatchNorm2d(cout))
    if act:
        parts.append(make_activation(act))
    return nn.Sequential(*parts)


def _mbconv(layer: LayerShape) -> InvertedResidual:
    cin, cout, mid = layer.input[2], layer.output[2], layer.mid
    expand = _conv_bn(cin, mid, 1, act=layer.act) if mid != cin else None  # the first block has no expand conv
    dw = _conv_bn(mid, mid, layer.kernel, stride=layer.stride, groups=mid, act=layer.act)
    if layer.se:
        dw.append(SqueezeExcite(mid, se_channels(mid)))
    return InvertedResidual(expand, dw, _conv_bn(mid, cout, 1), layer.skip)


def _bottleneck(layer: LayerShape) -> Bottleneck:
    cin, cout, mid = layer.input[2], layer.output[2], layer.mid
    down = None
    if not layer.skip:
        parts: list[nn.Module] = [nn.AvgPool2d(layer.stride, layer.stride, ceil_mode=True)] if layer.stride > 1 else []
        down = nn.Sequential(*parts, *_conv_bn(cin, cout, 1))
    return Bottleneck(_conv_bn(cin, mid, 1, act="relu"), _conv_bn(mid, mid, layer.kernel, stride=layer.stride,
                                                                  act="relu"),
                      _conv_bn(mid, cout, 1), down)


def layer_module(layer: LayerShape) -> nn.Module:
    """A model that runs `layer` alone, in eval mode; its input is `input_shape(layer)`."""
    cin, cout = layer.input[2], layer.output[2]
    if layer.op == "stem":
        body = _conv_bn(cin, cout, layer.kernel, stride=layer.stride, act=layer.act)
        model: nn.Module = ResidualConv(body) if layer.skip else body
    elif layer.op == "mbconv":
        model = _mbconv(layer)
    elif layer.op == "bottleneck":
        model = _bottleneck(layer)
    elif layer.op in ("final_expand", "feature_mix"):
        # MobileNetV3's feature mix runs on the pooled 1x1 map without batch norm; ProxylessNAS's before pooling, with
        model = _conv_bn(cin, cout, layer.kernel, act=layer.act, bn=layer.input[0] > 1)
    elif layer.op == "pool":
        model = nn.AdaptiveAvgPool2d(1)
    elif layer.op == "maxpool":
        model = nn.MaxPool2d(layer.kernel, layer.stride, layer.kernel // 2)
    elif layer.op == "classifier":
        model = nn.Sequential(nn.Flatten(1), nn.Linear(cin, cout))
    else:
        raise ValueError(f"no standalone model for layer op {layer.op!r}")
    return model.eval()


def input_shape(layer: LayerShape, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input of `layer_module(layer)`."""
    h, w, c = layer.input
    return batch, c, h, w
