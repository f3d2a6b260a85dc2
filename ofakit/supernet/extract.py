"""Extract a subnet as a plain `torch.nn` module with copied weights.

The result holds only standard layers (Conv2d, BatchNorm2d, Linear, pooling, activations) and, in eval mode, gives
the same outputs as the supernet set to the same arch. Elastic kernels are baked in: the transformed filter is
computed once and stored as an ordinary conv weight.
"""
from __future__ import annotations

import torch
from torch import nn

from ofakit.arch import ArchConfig
from ofakit.space.base import make_divisible
from ofakit.space.mbconv import mid_channels, se_channels
from ofakit.supernet.blocks import DynamicBottleneck, DynamicConvBNAct, DynamicMBConv, DynamicSE
from ofakit.supernet.build import Supernet
from ofakit.supernet.mbconv import MBConvSupernet
from ofakit.supernet.resnet import ResNetSupernet
from ofakit.supernet.static import (
    Bottleneck,
    InvertedResidual,
    ResidualConv,
    SqueezeExcite,
    StaticNet,
    make_activation,
)


def _conv(weight: torch.Tensor, bias: torch.Tensor | None = None, *, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    out_c, in_per_group, k, _ = weight.shape
    conv = nn.Conv2d(in_per_group * groups, out_c, k, stride, k // 2, groups=groups, bias=bias is not None)
    conv.weight.data.copy_(weight.detach())
    if bias is not None:
        conv.bias.data.copy_(bias.detach())
    return conv


def _bn(src: nn.BatchNorm2d, channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=src.eps, momentum=src.momentum)
    bn.weight.data.copy_(src.weight.detach()[:channels])
    bn.bias.data.copy_(src.bias.detach()[:channels])
    bn.running_mean.copy_(src.running_mean[:channels])
    bn.running_var.copy_(src.running_var[:channels])
    bn.num_batches_tracked.copy_(src.num_batches_tracked)
    return bn


def _se(se: DynamicSE, channels: int) -> SqueezeExcite:
    hidden = se_channels(channels)
    out = SqueezeExcite(channels, hidden)
    out.reduce = _conv(se.reduce.weight[:hidden, :channels], se.reduce.bias[:hidden])
    out.expand = _conv(se.expand.weight[:channels, :hidden], se.expand.bias[:channels])
    return out


def _mbconv(block: DynamicMBConv, kernel: int, expand: float) -> InvertedResidual:
    cin, cout = block.in_channels, block.out_channels
    expand_layer = None
    if block.expand_conv is not None:
        mid = mid_channels(cin, expand)
        expand_layer = nn.Sequential(_conv(block.expand_conv.weight[:mid, :cin]), _bn(block.expand_bn, mid),
                                     make_activation(block.act_name))
    else:
        mid = cin
    dw = [_conv(block.dw_conv.active_filter(mid, kernel), stride=block.stride, groups=mid), _bn(block.dw_bn, mid),
          make_activation(block.act_name)]
    if block.se is not None:
        dw.append(_se(block.se, mid))
    project = nn.Sequential(_conv(block.project_conv.weight[:cout, :mid]), _bn(block.project_bn, cout))
    return InvertedResidual(expand_layer, nn.Sequential(*dw), project, block.residual)


def _extract_mbconv(net: MBConvSupernet, arch: ArchConfig) -> StaticNet:
    space = net.space
    layers: list[nn.Module] = [
        _conv(net.stem_conv.weight, stride=net.stem_conv.stride[0]), _bn(net.stem_bn, net.stem_bn.num_features),
        make_activation(space.spec.stem_act), _mbconv(net.first_block, 3, 1),
    ]
    for slot in space.active_slots(arch):
        layers.append(_mbconv(net.blocks[slot], arch.kernel_sizes[slot], arch.expand_ratios[slot]))
    act = space.spec.head_act
    if net.final_expand_conv is not None:
        layers += [_conv(net.final_expand_conv.weight), _bn(net.final_expand_bn, net.final_expand_bn.num_features),
                   make_activation(act)]
        head = nn.Sequential(_conv(net.feature_mix_conv.weight), make_activation(act))
    else:
        layers += [_conv(net.feature_mix_conv.weight), _bn(net.feature_mix_bn, net.feature_mix_bn.num_features),
                   make_activation(act)]
        head = nn.Sequential()
    return StaticNet(nn.Sequential(*layers), head, _classifier(net.classifier, net.dropout, net.classifier.in_features),
                     arch)


def _classifier(linear: nn.Linear, dropout: nn.Dropout, in_features: int) -> nn.Sequential:
    out = nn.Linear(in_features, linear.out_features)
    out.weight.data.copy_(linear.weight.detach()[:, :in_features])
    out.bias.data.copy_(linear.bias.detach())
    return nn.Sequential(nn.Flatten(1), nn.Dropout(dropout.p), out)


def _conv_bn_act(layer: DynamicConvBNAct, cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv(layer.conv.weight[:cout, :cin], stride=layer.conv.stride[0]), _bn(layer.bn, cout),
                         nn.ReLU())


def _bottleneck(block: DynamicBottleneck, cin: int, cout: int, expand: float) -> Bottleneck:
    mid = make_divisible(round(cout * expand), 8)
    down = None
    if not block.identity:
        parts: list[nn.Module] = [nn.AvgPool2d(block.stride, block.stride, ceil_mode=True)] if block.stride > 1 else []
        parts += [_conv(block.down_conv.weight[:cout, :cin]), _bn(block.down_bn, cout)]
        down = nn.Sequential(*parts)
    return Bottleneck(
        nn.Sequential(_conv(block.conv1.weight[:mid, :cin]), _bn(block.bn1, mid), nn.ReLU()),
        nn.Sequential(_conv(block.conv2.weight[:mid, :mid], stride=block.stride), _bn(block.bn2, mid), nn.ReLU()),
        nn.Sequential(_conv(block.conv3.weight[:cout, :mid]), _bn(block.bn3, cout)),
        down,
    )


def _extract_resnet(net: ResNetSupernet, arch: ArchConfig) -> StaticNet:
    sp = net.space
    w = arch.width_mults
    mid, c = sp.stem_mid[w[0]], sp.stem_out[w[1]]
    layers: list[nn.Module] = [_conv_bn_act(net.stem0, 3, mid)]
    if sp.keeps_stem_block(arch):
        layers.append(ResidualConv(_conv_bn_act(net.stem1, mid, mid)))
    layers += [_conv_bn_act(net.stem2, mid, c), nn.MaxPool2d(3, 2, 1)]
    active = set(sp.active_slots(arch))
    for i, slots in enumerate(sp.stage_slots):
        width = sp.stage_out[i][w[2 + i]]
        for slot in slots:
            if slot in active:
                layers.append(_bottleneck(net.blocks[slot], c, width, arch.expand_ratios[slot]))
                c = width
    return StaticNet(nn.Sequential(*layers), nn.Sequential(), _classifier(net.classifier, net.dropout, c), arch)


@torch.no_grad()
def extract_subnet(supernet: Supernet, arch: ArchConfig) -> StaticNet:
    """A standalone network for `arch` with weights copied from `supernet` (which is left unchanged).

    The copy starts in the supernet's train/eval mode. Raises ArchError if `arch` is not legal in the space.
    """
    supernet.space.validate(arch)
    if isinstance(supernet, MBConvSupernet):
        net = _extract_mbconv(supernet, arch)
    elif isinstance(supernet, ResNetSupernet):
        net = _extract_resnet(supernet, arch)
    else:
        raise TypeError(f"not a supernet: {type(supernet).__name__}")
    net.train(supernet.training)
    param = next(supernet.parameters())
    return net.to(device=param.device, dtype=param.dtype)
