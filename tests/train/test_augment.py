import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from ofakit.train.augment import LEVELS, OPERATIONS, apply_operation, trivial_augment


def _images(n=6, side=16, seed=0):
    """uint8 N x H x W x 3 images with structure (gradients plus noise), so that every operation changes them."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 220, side)
    base = ramp[None, :, None, None] * rng.uniform(0.3, 1.0, (n, 1, 1, 3)) + ramp[None, None, :, None] * 0.2
    return np.clip(base + rng.normal(0, 12, (n, side, side, 3)), 0, 255).astype(np.uint8)


def _tensor(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255


def _uint8(x):
    return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


PIL_OPS = {  # name -> (our amount, what Pillow does with it)
    "brightness": (0.6, lambda im: ImageEnhance.Brightness(im).enhance(1.6)),
    "color": (-0.7, lambda im: ImageEnhance.Color(im).enhance(0.3)),
    "contrast": (0.8, lambda im: ImageEnhance.Contrast(im).enhance(1.8)),
    "sharpness": (0.9, lambda im: ImageEnhance.Sharpness(im).enhance(1.9)),
    "posterize": (5.0, lambda im: ImageOps.posterize(im, 3)),
    "solarize": (0.4, lambda im: ImageOps.solarize(im, 153)),
    "autocontrast": (0.0, ImageOps.autocontrast),
    "equalize": (0.0, ImageOps.equalize),
}


@pytest.mark.parametrize("name", sorted(PIL_OPS))
def test_each_pixel_operation_matches_pillow(name):
    images = _images()
    amount, pil = PIL_OPS[name]
    ours = _uint8(apply_operation(_tensor(images), name, [amount] * len(images))).astype(int)
    theirs = np.stack([np.asarray(pil(Image.fromarray(im))) for im in images]).astype(int)
    assert not np.array_equal(theirs, images)  # the case tests something
    # Pillow rounds its intermediate images to integers (luma, the contrast mean, the smoothed image); we do not
    tolerance = 0 if name in ("posterize", "solarize", "equalize") else 2
    assert np.abs(ours - theirs).max() <= tolerance, name


def test_translation_shifts_by_whole_pixels_and_fills_the_rest():
    images = _tensor(_images(n=2, side=8))
    fill = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    right = apply_operation(images, "translate_x", [2 / 8, -3 / 8], fill)
    assert torch.allclose(right[0, :, :, 2:], images[0, :, :, :-2])
    assert torch.allclose(right[0, :, :, :2], fill[0].expand(3, 8, 2))
    assert torch.allclose(right[1, :, :, :-3], images[1, :, :, 3:])
    down = apply_operation(images, "translate_y", [1 / 8, 1 / 8], fill)
    assert torch.allclose(down[:, :, 1:], images[:, :, :-1])


def test_rotation_by_a_right_angle_turns_the_image_counter_clockwise():
    images = _tensor(_images(n=2, side=8))
    turned = apply_operation(images, "rotate", [90.0, -90.0])
    assert torch.allclose(turned[0], torch.rot90(images[0], 1, dims=(1, 2)))
    assert torch.allclose(turned[1], torch.rot90(images[1], -1, dims=(1, 2)))


def test_horizontal_shear_moves_pixels_along_their_own_row():
    images = _tensor(_images(n=3, side=12))
    sheared = apply_operation(images, "shear_x", [0.5, -0.9, 0.3])
    assert not torch.allclose(sheared, images)
    for n in range(3):
        for row in range(12):
            source = {tuple(p) for p in images[n, :, row].T.tolist()} | {(0.0, 0.0, 0.0)}
            assert {tuple(p) for p in sheared[n, :, row].T.tolist()} <= source


def test_zero_strength_leaves_images_as_they_are():
    images = _tensor(_images())
    for name in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color", "contrast",
                 "sharpness", "posterize"):
        assert torch.allclose(apply_operation(images, name, [0.0] * len(images)), images, atol=1e-9), name
    with pytest.raises(ValueError, match="unknown augmentation 'blur'; choices: identity"):
        apply_operation(images, "blur", [0.0])


def test_trivial_augment_is_one_operation_per_image_seeded_by_the_generator():
    images = _tensor(_images(n=280, side=8, seed=3)).float()
    fill = torch.full((1, 3, 1, 1), 0.5)
    first = trivial_augment(images, torch.Generator().manual_seed(7), fill)
    again = trivial_augment(images, torch.Generator().manual_seed(7), fill)
    other = trivial_augment(images, torch.Generator().manual_seed(8), fill)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == images.shape and first.dtype == images.dtype
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    unchanged = (first - images).abs().amax(dim=(1, 2, 3)) < 1e-6
    # identity (1 in 14) and the zero level of most operations (1 in 31) keep an image: ~10 % of them here
    assert 0.02 < float(unchanged.float().mean()) < 0.3
    assert len(OPERATIONS) == 14 and LEVELS == 31
