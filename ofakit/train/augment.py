"""Augmentation of training batches, on whatever device the batch is on: crop and flip, cutout, and TrivialAugment.

Every function takes float images in [0, 1] (N x 3 x H x W) and a CPU `torch.Generator`; `iterate_batches` seeds that
generator per (seed, epoch, rank, batch), so a resumed run sees the batches it would have seen.

`trivial_augment` is TrivialAugment (Müller and Hutter, 2021) over its "wide" space: each image gets one operation,
drawn uniformly from `OPERATIONS`, at a strength drawn uniformly from 31 levels between none and the operation's most
(`MOST`), with a random sign where a sign means something. The operations act as Pillow's do (`ImageOps`,
`ImageEnhance`, affine transforms with nearest-pixel sampling), computed batched in torch: one image at a time through
Pillow would cost more than a training step's forward pass on a small network.
"""
from __future__ import annotations

import math
from typing import Any

from ofakit.errors import ConfigError

POLICIES = ("none", "trivialaugment")  # the recipe's `augment_policy`
OPERATIONS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
              "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
LEVELS = 31
# strength at the top level: shear as a slope, translation as a fraction of the image's side (the wide space's 32 pixels
# on CIFAR-10's 32), rotation in degrees, enhancement factors as 1 +- this, posterize as bits removed from 8, solarize
# as the fraction of the range above the threshold
MOST = {"shear_x": 0.99, "shear_y": 0.99, "translate_x": 1.0, "translate_y": 1.0, "rotate": 135.0,
        "brightness": 0.99, "color": 0.99, "contrast": 0.99, "sharpness": 0.99, "posterize": 6.0, "solarize": 1.0}
SIGNED = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color", "contrast", "sharpness")
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


def check_policy(name: str) -> str:
    """`name` if it is one of `POLICIES`; otherwise a ConfigError that lists them (recipes and `iterate_batches`)."""
    if name not in POLICIES:
        raise ConfigError(f"augment_policy {name!r} is not a policy; choices: {', '.join(POLICIES)}")
    return name


def crop_flip(x, gen):  # noqa: ANN001, ANN201 - torch types imported lazily
    """Random crop after reflect padding by 1/8 of the side, and a horizontal flip for half the images."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    out = padded[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(3, device=x.device).view(1, 3, 1, 1),
                 rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)


def cutout(x, side, gen, fill):  # noqa: ANN001, ANN201 - torch types imported lazily
    """One square of `side` pixels per image, centred anywhere in it (clipped at the border), set to `fill`."""
    import torch

    n, _, h, w = x.shape
    top = torch.randint(0, h, (n,), generator=gen).to(x.device).view(n, 1, 1, 1) - side // 2
    left = torch.randint(0, w, (n,), generator=gen).to(x.device).view(n, 1, 1, 1) - side // 2
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return torch.where(inside, fill.to(x.dtype), x)


def trivial_augment(x, gen, fill):  # noqa: ANN001, ANN201 - torch types imported lazily
    """TrivialAugment (wide): one operation per image at a uniform random strength; `fill` (1 x 3 x 1 x 1) is what
    geometric operations bring in from outside the image."""
    import torch

    n = x.shape[0]
    ops = torch.randint(0, len(OPERATIONS), (n,), generator=gen)
    levels = torch.randint(0, LEVELS, (n,), generator=gen).double() / (LEVELS - 1)
    signs = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    out = x.clone()
    for index, name in enumerate(OPERATIONS):
        chosen = (ops == index).nonzero().flatten()
        if name == "identity" or len(chosen) == 0:
            continue
        amount = levels[chosen] * MOST.get(name, 1.0) * (signs[chosen] if name in SIGNED else 1.0)
        where = chosen.to(x.device)
        out[where] = apply_operation(x[where], name, amount, fill)
    return out


def apply_operation(x, name: str, amounts: Any, fill: Any = None):  # noqa: ANN001, ANN201
    """One of `OPERATIONS` on every image of `x`, at each image's own amount: a slope (shear), a fraction of the side
    (translate, positive: right or down), degrees (rotate, positive: counter-clockwise), factor - 1 (brightness,
    color, contrast, sharpness: 0 keeps the image), bits removed (posterize, rounded), the fraction of the range above
    the threshold (solarize: pixels >= 1 - amount are inverted); autocontrast, equalize and identity take none."""
    import torch

    if name not in OPERATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choices: {', '.join(OPERATIONS)}")
    if name == "identity" or len(x) == 0:
        return x
    amounts = torch.as_tensor(amounts, dtype=torch.float64).cpu()  # a list, or a tensor from `trivial_augment`
    if name in GEOMETRIC:
        return _affine(x, name, amounts, torch.zeros(1, 3, 1, 1, device=x.device) if fill is None else fill)
    amount = amounts.to(x.device, x.dtype).view(-1, 1, 1, 1)
    if name == "brightness":
        return (x * (1 + amount)).clamp(0, 1)
    if name == "color":
        return _blend(_gray(x), x, 1 + amount)
    if name == "contrast":
        return _blend(_gray(x).mean(dim=(1, 2, 3), keepdim=True), x, 1 + amount)
    if name == "sharpness":
        return _blend(_smooth(x), x, 1 + amount)
    values = (x * 255).round()
    if name == "posterize":
        step = torch.exp2(amount.round().clamp(0, 8))
        return (values / step).floor() * step / 255
    if name == "solarize":
        return torch.where(values >= ((1 - amount) * 255).round(), 255 - values, values) / 255
    if name == "autocontrast":
        low = values.amin(dim=(2, 3), keepdim=True)
        high = values.amax(dim=(2, 3), keepdim=True)
        span = (high - low).clamp(min=1)
        return torch.where(high > low, ((values - low) * (255 / span)).round().clamp(0, 255), values) / 255
    return _equalize(values) / 255


def _affine(x, name: str, a, fill):  # noqa: ANN001, ANN202
    """Shear, translate or rotate about the centre by the amounts `a` (float64, on the CPU), sampling the nearest
    source pixel; outside: `fill`."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # theta maps each output position (normalized to [-1, 1]) to the input position it reads
    if name == "shear_x":
        theta[:, 0, 1] = a
    elif name == "shear_y":
        theta[:, 1, 0] = a
    elif name == "translate_x":
        theta[:, 0, 2] = -2 * a
    elif name == "translate_y":
        theta[:, 1, 2] = -2 * a
    else:  # rotate: counter-clockwise on screen, where y points down
        radians = a * (math.pi / 180)
        theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(radians)
        theta[:, 0, 1] = -torch.sin(radians)
        theta[:, 1, 0] = torch.sin(radians)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="nearest", padding_mode="zeros", align_corners=False) + fill


def _gray(x):  # noqa: ANN001, ANN202
    """Luma as Pillow's convert("L") computes it (ITU-R 601-2), N x 1 x H x W."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _blend(base, x, factor):  # noqa: ANN001, ANN202
    """Pillow's ImageEnhance: base + factor * (x - base), clipped to [0, 1]."""
    return (base + factor * (x - base)).clamp(0, 1)


def _smooth(x):  # noqa: ANN001, ANN202
    """Pillow's SMOOTH filter (3x3, centre 5, the rest 1, over 13), the border pixels left as they are."""
    import torch
    import torch.nn.functional as F

    kernel = torch.ones(3, 1, 3, 3, dtype=x.dtype, device=x.device)
    kernel[:, :, 1, 1] = 5
    inner = F.conv2d(x, kernel / 13, groups=3)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def _equalize(values):  # noqa: ANN001, ANN202
    """Pillow's ImageOps.equalize per image and channel, on 0-255 integer values (as floats); returns the same."""
    import torch

    n, c, h, w = values.shape
    flat = values.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=values.device).scatter_add_(1, flat, torch.ones_like(flat))
    last = 255 - (hist > 0).flip(1).long().argmax(dim=1, keepdim=True)  # the highest value present
    step = (h * w - hist.gather(1, last)) // 255
    before = hist.cumsum(1) - hist
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255)
    out = torch.where(step > 0, lut.gather(1, flat), flat)
    return out.reshape(n, c, h, w).to(values.dtype)
