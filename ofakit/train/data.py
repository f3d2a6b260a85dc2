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
        self.labels = check_labels(self.labels, len(self.classes), f"dataset {self.name!r}: labels")
        if len(self.labels) != len(self.images):
            raise ConfigError(f"dataset {self.name!r}: {len(self.images)} images but {len(self.labels)} labels")
        self.mean = check_normalization(self.mean, f"dataset {self.name!r}: mean")
        self.std = check_normalization(self.std, f"dataset {self.name!r}: std", positive=True)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.name, self.mean, self.std)


def check_labels(labels: np.ndarray, num_classes: int | None, where: str) -> np.ndarray:
    """`labels` as int64 when they are a 1-D array of integers in [0, num_classes) (None: >= 0), vectorized (cheap
    for 50,000); else one ConfigError starting with `where` (e.g. "data.npz: val_labels")."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ConfigError(f"{where} must be a 1-D array of integer class indices, got {labels.dtype} "
                          f"{labels.shape}")
    high = np.iinfo(np.int64).max if num_classes is None else num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= high):
        bad = np.unique(labels[(labels < 0) | (labels >= high)])
        span = "below 0" if num_classes is None else f"outside 0..{num_classes - 1}"
        raise ConfigError(f"{where} hold(s) {', '.join(map(str, bad[:3]))}{' ...' if len(bad) > 3 else ''}, "
                          f"{span} (a label is the index of its class in the class list)")
    return labels.astype(np.int64)


def check_normalization(values: object, where: str, *, positive: bool = False) -> tuple[float, float, float]:
    """Per-channel `values` (mean or std) as 3 floats when they are 3 finite numbers (and, `positive`, each > 0);
    else one ConfigError starting with `where`."""
    array = np.asarray(values)
    if array.shape != (3,) or array.dtype.kind not in "iuf" or not np.isfinite(array).all() \
            or (positive and (array <= 0).any()):
        need = "3 finite numbers above 0" if positive else "3 finite numbers"
        raise ConfigError(f"{where} must be {need} (one per RGB channel), got {array.tolist()!r}")
    return tuple(float(v) for v in array)


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
    """One split of an array dataset, its arrays checked first (each error names the file and the array). Without
    `classes`, the classes are 0..max of `train_labels` in both splits, so that a label means the same in each."""
    prefixes = [split] if split == "train" else ["val", "test"]
    for prefix in prefixes:
        if f"{prefix}_images" in data.files and f"{prefix}_labels" in data.files:
            labels = check_labels(data[f"{prefix}_labels"], None, f"{path}: {prefix}_labels")
            if not len(labels):
                raise ConfigError(f"{path}: {prefix}_labels is empty; the {split} split needs images")
            if "classes" in data.files:
                names = np.asarray(data["classes"])
                if names.ndim != 1 or not len(names):
                    raise ConfigError(f"{path}: classes must be a 1-D array of class names, got shape {names.shape}")
                classes, named = [str(c) for c in names], ""
            else:  # 0..the largest training label, in both splits
                train = labels
                if prefix != "train" and "train_labels" in data.files:
                    train = check_labels(data["train_labels"], None, f"{path}: train_labels")
                classes = [str(i) for i in range(int(train.max(initial=0)) + 1)]
                named = " (with no 'classes' array, the classes are 0..the largest of train_labels)"
            labels = check_labels(labels, len(classes), f"{path}: {prefix}_labels{named}")
            norm = {k: check_normalization(data[k], f"{path}: {k}", positive=k == "std")
                    for k in ("mean", "std") if k in data.files}
            return ArrayDataset(np.asarray(data[f"{prefix}_images"]), labels, classes, path.stem, **norm)
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
        labels = check_labels(labels, len(CIFAR10_CLASSES), f"{path}: {part}_y")
        if len(offsets) != len(labels) + 1:
            raise ConfigError(f"{path}: {part}_offsets holds {len(offsets)} offsets for {len(labels)} images "
                              "(one more than the images)")
        images = []
        for i in range(len(labels)):
            try:
                image = Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise ConfigError(f"{path}: {part} image {i} ({part}_bytes[{offsets[i]}:{offsets[i + 1]}]) cannot "
                                  f"be decoded ({_unreadable(exc)})") from None
            images.append(np.asarray(image))
        atomic_write_npz(cached, images=np.stack(images), labels=labels)
    with np.load(cached, allow_pickle=False) as data:
        return ArrayDataset(data["images"], data["labels"], list(CIFAR10_CLASSES), "cifar10",
                            mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


def _image_folder(root: Path, split: str, image_size: int) -> ArrayDataset:
    """One split of an ImageFolder tree. Both splits number their classes by the train split's class folders
    (sorted), so that a val/ lacking a class keeps every label; a val class that train/ lacks is an error."""
    from PIL import Image

    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1 (the side ImageFolder images are resized to), got {image_size}")
    folders = {"train": root / "train", "val": root / "val" if (root / "val").is_dir() else root / "test"}
    classes = _class_folders(root, folders["train"], "train")
    folder = folders[split]
    present = classes if split == "train" else _class_folders(root, folder, "val")
    foreign = [name for name in present if name not in classes]
    if foreign:
        raise ConfigError(f"ImageFolder {folder} has class folder(s) {', '.join(map(repr, foreign[:3]))} that "
                          f"{folders['train']} lacks; each class of {folder.name}/ must be one of train/'s")
    images, labels = [], []
    for name in present:
        for file in sorted((folder / name).iterdir()):
            if file.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                try:
                    img = Image.open(file).convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    raise ConfigError(f"ImageFolder image {file} cannot be read ({_unreadable(exc)}); replace or "
                                      "remove it") from None
                images.append(np.asarray(img))
                labels.append(classes.index(name))
    if not images:
        raise ConfigError(f"ImageFolder {folder} holds no images")
    return ArrayDataset(np.stack(images), np.array(labels, dtype=np.int64), classes, root.name)


def _unreadable(exc: Exception) -> str:
    """Why Pillow could not read an image, in a few words (its own message names a file or a BytesIO object)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow reads"
    text = str(exc).splitlines()
    return text[0] if text else type(exc).__name__


def _class_folders(root: Path, folder: Path, split: str) -> list[str]:
    """The class folders of one split of an ImageFolder tree, sorted."""
    if not folder.is_dir():
        raise ConfigError(f"ImageFolder {root} has no '{split}/' directory")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"ImageFolder {folder} has no class directories")
    return classes


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
