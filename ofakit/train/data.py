"""Image data for training, BN recalibration, predictor fitting and export checks.

Sources (a string, as on the command line):
- ``digits``: scikit-learn's 8x8 handwritten digits (ships with scikit-learn; deterministic 80/20 split).
- ``PATH.npz``: an array dataset anyone can write: ``train_images``/``val_images`` (uint8, N x H x W x 3) and
  ``train_labels``/``val_labels`` (integers), optional ``classes`` (strings) and ``mean``/``std`` (3 floats each,
  for normalisation; default ImageNet's). ``test_*`` is accepted for ``val_*``.
- the CIFAR-10 JPEG archive (``train_bytes``/``train_offsets``/``train_y`` ...): decoded once with Pillow and cached
  as arrays (``$OFAKIT_CACHE`` or ``~/.cache/ofakit``).
- ``DIR``: an ImageFolder tree (``DIR/train/<class>/*.jpg``, ``DIR/val/<class>/*.jpg``), decoded and resized to
  ``--image-size`` once into memory.

Everything becomes an `ArrayDataset` of uint8 images in memory; batches are made on the fly as normalised float
tensors at the resolution the caller asks for (so a per-batch resolution costs one interpolation).
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ofakit.errors import ConfigError
from ofakit.io import atomic_write_npz, cache_dir, read_user_bytes
from ofakit.train.augment import check_policy, crop_flip, trivial_augment
from ofakit.train.augment import cutout as cut_square  # `cutout` is iterate_batches's argument

SPLITS = ("train", "val")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class ArrayDataset:
    """Images (uint8, N x H x W x 3) and integer labels held in memory."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ConfigError(f"dataset {self.name!r}: images must be uint8 N x H x W x 3, "
                              f"got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ConfigError(f"dataset {self.name!r}: {len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.name, self.mean, self.std)


def load_dataset(source: str, split: str, *, image_size: int = 224) -> ArrayDataset:
    """Load one split ("train" or "val") of a data source (see the module docstring)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choices: {', '.join(SPLITS)}")
    if source == "digits":
        return _digits(split)
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"data source {source!r} does not exist; give 'digits', an .npz array dataset, "
                          "the CIFAR-10 JPEG .npz, or an ImageFolder directory with train/ and val/")
    if path.is_dir():
        return _image_folder(path, split, image_size)
    if path.suffix != ".npz":
        raise ConfigError(f"data source {source!r} is neither a directory nor an .npz file")
    return read_user_bytes(path, "a data source (.npz arrays, no pickles)",
                           lambda raw: _from_npz(path, np.load(io.BytesIO(raw), allow_pickle=False), split))


def _from_npz(path: Path, data: np.lib.npyio.NpzFile, split: str) -> ArrayDataset:
    with data:
        if {"train_bytes", "train_offsets", "train_y"} <= set(data.files):
            return _cifar_jpeg(path, split)
        return _arrays(path, data, split)


def _digits(split: str) -> ArrayDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.repeat((digits.images / 16.0 * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.8 * len(images))
    index = order[:cut] if split == "train" else order[cut:]
    return ArrayDataset(images[index], digits.target[index], [str(i) for i in range(10)], "digits",
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _arrays(path: Path, data: np.lib.npyio.NpzFile, split: str) -> ArrayDataset:
    prefixes = [split] if split == "train" else ["val", "test"]
    for prefix in prefixes:
        if f"{prefix}_images" in data.files and f"{prefix}_labels" in data.files:
            classes = [str(c) for c in data["classes"]] if "classes" in data.files else None
            labels = data[f"{prefix}_labels"]
            classes = classes or [str(i) for i in range(int(labels.max()) + 1)]
            norm = {k: tuple(float(v) for v in data[k]) for k in ("mean", "std") if k in data.files}
            return ArrayDataset(np.asarray(data[f"{prefix}_images"]), np.asarray(labels), classes, path.stem, **norm)
    raise ConfigError(f"{path} has no '{split}_images'/'{split}_labels' arrays (found: {', '.join(data.files)}); "
                      "an array dataset holds train_images, train_labels, val_images, val_labels (uint8 NHWC)")


def _cifar_jpeg(path: Path, split: str) -> ArrayDataset:
    """CIFAR-10 from the JPEG archive, decoded once and cached (keyed by the archive's size and mtime)."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    part = "train" if split == "train" else "test"
    cached = cache_dir() / f"cifar10-{key}-{part}.npz"
    if not cached.exists():
        from PIL import Image

        with np.load(path, allow_pickle=False) as data:
            blob, offsets, labels = data[f"{part}_bytes"], data[f"{part}_offsets"], data[f"{part}_y"]
        images = np.stack([np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes()))
                                      .convert("RGB")) for i in range(len(labels))])
        atomic_write_npz(cached, images=images, labels=labels)
    with np.load(cached, allow_pickle=False) as data:
        return ArrayDataset(data["images"], data["labels"], list(CIFAR10_CLASSES), "cifar10",
                            mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


def _image_folder(root: Path, split: str, image_size: int) -> ArrayDataset:
    from PIL import Image

    folder = root / split
    if split == "val" and not folder.is_dir():
        folder = root / "test"
    if not folder.is_dir():
        raise ConfigError(f"ImageFolder {root} has no '{split}/' directory")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"ImageFolder {folder} has no class directories")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).iterdir()):
            if file.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                img = Image.open(file).convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                images.append(np.asarray(img))
                labels.append(label)
    if not images:
        raise ConfigError(f"ImageFolder {folder} holds no images")
    return ArrayDataset(np.stack(images), np.array(labels), classes, root.name)


def iterate_batches(ds: ArrayDataset, batch_size: int, *, resolution: int | None = None, shuffle: bool = False,
                    seed: int = 0, epoch: int = 0, augment: bool = False, rank: int = 0, world_size: int = 1,
                    drop_last: bool = False, device: str = "cpu", limit: int | None = None,
                    start: int = 0, cutout: int = 0, policy: str = "none") -> Iterator[tuple]:
    """Yield (images, labels) tensors: normalised float NCHW at `resolution`, shuffled per (seed, epoch).

    With `world_size` > 1 each rank takes every world_size-th sample of the same permutation (as
    DistributedSampler does). `augment` applies random crop (1/8 of the side as reflect padding) and horizontal
    flip, seeded per batch, so that starting at batch `start` (a resumed run) gives the same batches as before.
    With `augment`, `policy` "trivialaugment" then applies one TrivialAugment operation per image (Müller and Hutter,
    2021; `ofakit.train.augment`), and `cutout` > 0 sets one square of that side per image (centred anywhere in it,
    clipped at the border) to the dataset mean, which is zero once normalised (DeVries and Taylor, 2017: 16 px for
    CIFAR-10).
    """
    import torch

    check_policy(policy)

    n = len(ds)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    order = order[rank::world_size]
    if limit is not None:
        order = order[: limit * batch_size]
    mean = torch.tensor(ds.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(ds.std, device=device).view(1, 3, 1, 1)
    for batch in range(start, (len(order) + batch_size - 1) // batch_size):
        index = order[batch * batch_size:(batch + 1) * batch_size]
        if drop_last and len(index) < batch_size:
            break
        x = torch.from_numpy(ds.images[index]).to(device).permute(0, 3, 1, 2).float().div_(255)
        if augment:
            gen = torch.Generator().manual_seed(hash((seed, epoch, rank, batch)) & 0x7FFFFFFF)
            x = crop_flip(x, gen)
            if policy == "trivialaugment":
                x = trivial_augment(x, gen, mean)
            if cutout:
                x = cut_square(x, cutout, gen, mean)
        if resolution is not None:
            x = resize_batch(x, resolution)
        x = (x - mean) / std
        yield x.contiguous(), torch.from_numpy(ds.labels[index]).to(device)


def resize_batch(x, resolution: int):  # noqa: ANN001, ANN201 - torch types imported lazily
    """Images (N x C x H x W) at `resolution` square: bilinear, antialiased when shrinking; as they are (the same
    tensor) when already there. Training and evaluation both resize this way, so that a subnet is measured on the
    images it was trained on."""
    import torch.nn.functional as F

    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=resolution < x.shape[-1])
