"""Elastic kernel: centre crops passed through the kernel-transformation matrices (x @ M^T), 7 -> 5 -> 3."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ofakit.supernet.dynamic_bn import DynamicBatchNorm2d
from ofakit.supernet.dynamic_conv import DynamicConv2d, DynamicDepthwiseConv2d


def test_identity_transforms_give_centre_crops():
    conv = DynamicDepthwiseConv2d(4, (3, 5, 7))
    torch.testing.assert_close(conv.active_filter(4, 7), conv.weight)
    torch.testing.assert_close(conv.active_filter(4, 5), conv.weight[:, :, 1:6, 1:6])
    torch.testing.assert_close(conv.active_filter(3, 3), conv.weight[:3, :, 2:5, 2:5])


def test_transforms_chain_from_the_largest_kernel():
    torch.manual_seed(0)
    conv = DynamicDepthwiseConv2d(2, (3, 5, 7))
    with torch.no_grad():
        conv.transform_7to5.copy_(torch.randn(25, 25))
        conv.transform_5to3.copy_(torch.randn(9, 9))
    w = conv.weight.detach()
    five = (w[:, 0, 1:6, 1:6].reshape(2, 25) @ conv.transform_7to5.detach().T).reshape(2, 1, 5, 5)
    three = (five[:, 0, 1:4, 1:4].reshape(2, 9) @ conv.transform_5to3.detach().T).reshape(2, 1, 3, 3)
    torch.testing.assert_close(conv.active_filter(2, 5), five)
    torch.testing.assert_close(conv.active_filter(2, 3), three)
    conv.active_kernel = 3
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(conv(x), F.conv2d(x, three, None, 1, 1, 1, 2))


def test_dynamic_conv_slices_leading_channels():
    conv = DynamicConv2d(8, 6, kernel_size=3, stride=2, bias=True)
    conv.active_out = 4
    x = torch.randn(1, 5, 7, 7)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight[:4, :5], conv.bias[:4], 2, 1))


def test_dynamic_bn_updates_only_leading_statistics():
    bn = DynamicBatchNorm2d(6)
    x = torch.randn(4, 3, 5, 5) + 2.0
    bn.train()
    bn(x)
    assert torch.all(bn.running_mean[3:] == 0)
    torch.testing.assert_close(bn.running_mean[:3], 0.1 * x.mean(dim=(0, 2, 3)))
    bn.eval()
    y = bn(x)
    ref = F.batch_norm(x, bn.running_mean[:3], bn.running_var[:3], bn.weight[:3], bn.bias[:3], False, 0.0, bn.eps)
    torch.testing.assert_close(y, ref)
