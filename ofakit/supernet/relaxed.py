"""An MBConv supernet with its choices relaxed to probabilities, for a differentiable search on frozen weights (Liu et
al., "DARTS", ICLR 2019; Wu et al., "FBNet", CVPR 2019; Wan et al., "FBNetV2", CVPR 2020; Stamoulis et al.,
"Single-Path NAS", 2019).

Per block slot a distribution over kernel sizes and one over expand ratios, per stage one over depths:
- kernel: one depthwise conv with the probability-weighted sum of the slot's kernel-transformed filters, each
  zero-padded to the largest (Single-Path NAS's superkernel);
- expand: the widest expansion, its channels multiplied after the depthwise conv by the probability that the chosen
  width keeps them (FBNetV2's channel mask), the squeeze-excite's hidden units likewise;
- depth: the probability-weighted sum of the stage's outputs after each allowed depth.
Batch norm normalizes by the batch's statistics, as during supernet training; its running statistics are neither
read nor changed. For one-hot probabilities the forward pass is exactly the subnet's, so that the relaxation ends
where a discrete subnet begins.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofakit.space.mbconv import mid_channels, se_channels
from ofakit.supernet.blocks import DynamicMBConv
from ofakit.supernet.mbconv import MBConvSupernet

_ACT = {"relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish}


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    c = x.shape[1]
    weight = bn.weight[:c] if bn.weight is not None else None
    bias = bn.bias[:c] if bn.bias is not None else None
    return F.batch_norm(x, None, None, weight, bias, True, 0.0, bn.eps)


def _block(block: DynamicMBConv, x: torch.Tensor, kernel_p: torch.Tensor, expand_p: torch.Tensor,
           kernels: tuple[int, ...], expands: tuple[float, ...]) -> torch.Tensor:
    act = _ACT[block.act_name]
    if block.expand_conv is not None:
        h = act(_bn(F.conv2d(x, block.expand_conv.weight[:, : x.shape[1]]), block.expand_bn))
        mids = [mid_channels(block.in_channels, e) for e in expands]
    else:
        h, mids = x, [x.shape[1]] * len(expands)
    c, big = h.shape[1], block.dw_conv.max_kernel
    filt = sum(p * F.pad(block.dw_conv.active_filter(c, k), [(big - k) // 2] * 4) for p, k in zip(kernel_p, kernels))
    h = act(_bn(F.conv2d(h, filt, None, block.stride, big // 2, 1, c), block.dw_bn))
    keep = torch.arange(c, device=h.device)
    h = h * sum(p * (keep < m) for p, m in zip(expand_p, mids)).view(1, c, 1, 1)
    if block.se is not None:
        se = block.se
        hidden = torch.arange(se.reduce.out_channels, device=h.device)
        z = F.relu(F.linear(h.mean((2, 3)), se.reduce.weight[:, :c, 0, 0], se.reduce.bias))
        z = z * sum(p * (hidden < se_channels(m)) for p, m in zip(expand_p, mids))
        h = h * F.hardsigmoid(F.linear(z, se.expand.weight[:c, :, 0, 0], se.expand.bias[:c]))[:, :, None, None]
    y = _bn(F.conv2d(h, block.project_conv.weight[:, :c]), block.project_bn)
    return x + y if block.residual else y


def relaxed_forward(net: MBConvSupernet, x: torch.Tensor, kernel_p: torch.Tensor, expand_p: torch.Tensor,
                    depth_p: torch.Tensor) -> torch.Tensor:
    """Logits of the relaxed supernet on the batch `x`.

    Args:
        kernel_p: [slots, kernel choices] probabilities, in the space's kernel order.
        expand_p: [slots, expand choices] probabilities.
        depth_p: [stages, depth choices of the stage] probabilities (columns beyond a stage's choices: 0).
    """
    sp, s = net.space, net.space.spec
    h = _ACT[s.stem_act](_bn(net.stem_conv(x), net.stem_bn))
    first = net.first_block
    h = _block(first, h, torch.ones(1), torch.ones(1), (first.dw_conv.max_kernel,), (1,))
    for stage, slots in enumerate(sp.stage_slots):
        exits = []
        for position, slot in enumerate(slots):
            h = _block(net.blocks[slot], h, kernel_p[slot], expand_p[slot], s.kernel_choices, s.expand_choices)
            if position + 1 in sp.stage_depths[stage]:
                exits.append(h)
        h = sum(p * out for p, out in zip(depth_p[stage], exits))
    act = _ACT[s.head_act]
    if net.final_expand_conv is not None:
        h = act(_bn(net.final_expand_conv(h), net.final_expand_bn))
        h = act(net.feature_mix_conv(F.adaptive_avg_pool2d(h, 1)))
    else:
        h = F.adaptive_avg_pool2d(act(_bn(net.feature_mix_conv(h), net.feature_mix_bn)), 1)
    return net.classifier(torch.flatten(h, 1))
