"""Data sources (digits, .npz arrays, ImageFolder, the CIFAR-10 JPEG archive) and deterministic batching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ofakit.errors import ConfigError
from ofakit.train.data import ArrayDataset, iterate_batches, load_dataset, resize_batch

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_digits_split_is_disjoint_and_stable():
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    assert len(train) + len(val) == 1797 and train.num_classes == 10
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (8, 8, 3)
    assert np.array_equal(load_dataset("digits", "train").labels, train.labels)


def test_npz_array_dataset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, train_images=rng.integers(0, 255, (20, 12, 12, 3), dtype=np.uint8),
             train_labels=rng.integers(0, 3, 20), test_images=rng.integers(0, 255, (5, 12, 12, 3), dtype=np.uint8),
             test_labels=np.array([0, 1, 2, 0, 1]), classes=np.array(["a", "b", "c"]))
    train, val = load_dataset(str(path), "train"), load_dataset(str(path), "val")
    assert len(train) == 20 and len(val) == 5 and val.classes == ["a", "b", "c"]
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ConfigError, match="has no 'train_images'/'train_labels' arrays"):
        load_dataset(str(tmp_path / "bad.npz"), "train")
    np.savez(tmp_path / "gray.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros(2, np.int64))
    with pytest.raises(ConfigError, match="images must be uint8 N x H x W x 3"):
        load_dataset(str(tmp_path / "gray.npz"), "train")


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20 + i, 17), colour).save(folder / f"{i}.png")
    train = load_dataset(str(tmp_path), "train", image_size=16)
    assert train.classes == ["cat", "dog"] and train.images.shape == (6, 16, 16, 3)
    assert train.images[0, 0, 0, 0] == 255 and train.images[-1, 0, 0, 2] == 255
    with pytest.raises(ConfigError, match="has no 'train/' directory"):
        load_dataset(str(tmp_path / "train"), "train")


def _image_folder(root, classes):
    from PIL import Image

    for split, names in classes.items():
        for i, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (10, 10), (40 * i, 0, 0)).save(root / split / name / "0.png")
    return root


def test_image_folder_val_numbers_its_classes_as_train_does(tmp_path):
    root = _image_folder(tmp_path / "f", {"train": ["a", "b", "c"], "val": ["a", "c"]})
    train, val = load_dataset(str(root), "train", image_size=8), load_dataset(str(root), "val", image_size=8)
    assert train.classes == val.classes == ["a", "b", "c"]
    assert train.labels.tolist() == [0, 1, 2] and val.labels.tolist() == [0, 2]  # 'c' is 2 in both
    (root / "val" / "d").mkdir()
    with pytest.raises(ConfigError, match=r"ImageFolder .*val has class folder\(s\) 'd' that .*train lacks"):
        load_dataset(str(root), "val", image_size=8)


def test_an_unreadable_image_or_size_is_one_error_naming_it(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "f", {"train": ["a"], "val": ["a"]})
    with pytest.raises(ConfigError, match="image_size must be >= 1"):
        load_dataset(str(root), "train", image_size=0)
    (root / "train" / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match=r"ImageFolder image .*train/a/bad.jpg cannot be read \(not an image"):
        load_dataset(str(root), "train", image_size=8)
    monkeypatch.setenv("OFAKIT_CACHE", str(tmp_path / "cache"))
    good = (root / "val" / "a" / "0.png").read_bytes()
    blob = np.frombuffer(good + b"garbage!", np.uint8)
    np.savez(tmp_path / "c.npz", train_bytes=blob, train_offsets=np.array([0, len(good), len(blob)]),
             train_y=np.array([1, 2], np.uint8), test_bytes=blob, test_offsets=np.array([0, len(good)]),
             test_y=np.array([1], np.uint8))
    with pytest.raises(ConfigError, match=r"c.npz: train image 1 \(train_bytes\[\d+:\d+\]\) cannot be decoded"):
        load_dataset(str(tmp_path / "c.npz"), "train")
    assert len(load_dataset(str(tmp_path / "c.npz"), "val")) == 1


def _npz(path, **changes):
    arrays = {"train_images": np.zeros((4, 6, 6, 3), np.uint8), "train_labels": np.array([0, 1, 2, 1]),
              "val_images": np.zeros((2, 6, 6, 3), np.uint8), "val_labels": np.array([2, 0]),
              "classes": np.array(["a", "b", "c"]), "mean": np.array([0.5, 0.5, 0.5]), "std": np.array([0.2] * 3)}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.mark.parametrize(("changes", "split", "message"), [
    ({"train_labels": np.array([0, 1, 3, 1])}, "train", r"d.npz: train_labels hold\(s\) 3, outside 0..2"),
    ({"train_labels": np.array([0, -1, 2, 1])}, "train", r"d.npz: train_labels hold\(s\) -1, below 0"),
    ({"train_labels": np.array([[0], [1], [2], [1]])}, "train",
     r"d.npz: train_labels must be a 1-D array of integer class indices, got int64 \(4, 1\)"),
    ({"train_labels": np.array([0.0, 1.0, 2.0, 1.0])}, "train", r"train_labels must be .* integer .*, got float64"),
    ({"val_labels": np.array([2, 5])}, "val", r"d.npz: val_labels hold\(s\) 5, outside 0..2"),
    ({"classes": None, "val_labels": np.array([3, 0])}, "val",
     r"val_labels \(with no 'classes' array, the classes are 0..the largest of train_labels\) hold\(s\) 3"),
    ({"classes": np.array([["a", "b"], ["c", "d"]])}, "train", r"d.npz: classes must be a 1-D array of class names"),
    ({"mean": np.array([0.5, 0.5])}, "train", r"d.npz: mean must be 3 finite numbers .*, got \[0.5, 0.5\]"),
    ({"std": np.array([0.2, 0.0, 0.2])}, "train", r"d.npz: std must be 3 finite numbers above 0"),
    ({"std": np.array([0.2, np.nan, 0.2])}, "val", r"d.npz: std must be 3 finite numbers above 0"),
    ({"val_images": np.zeros((0, 6, 6, 3), np.uint8), "val_labels": np.array([], np.int64)}, "val",
     r"d.npz: val_labels is empty"),
], ids=["beyond", "negative", "2-d", "float", "val-beyond", "val-beyond-train", "classes-2-d", "mean-2", "std-0",
        "std-nan", "empty"])
def test_npz_labels_and_normalization_are_checked(tmp_path, changes, split, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(_npz(tmp_path / "d.npz", **changes), split)


def test_npz_without_classes_numbers_both_splits_by_the_training_labels(tmp_path):
    val = load_dataset(_npz(tmp_path / "d.npz", classes=None, val_labels=np.array([0, 0])), "val")
    assert val.classes == ["0", "1", "2"] and val.std == (0.2, 0.2, 0.2)


def test_missing_source_and_bad_split():
    with pytest.raises(ConfigError, match="does not exist; give 'digits'"):
        load_dataset("/nonexistent/data.npz", "train")
    with pytest.raises(ConfigError, match="unknown split 'test'"):
        load_dataset("digits", "test")


@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.npz").is_file(), reason="../shared/data/cifar10-jpeg.npz is absent")
def test_cifar_jpeg_is_decoded_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("OFAKIT_CACHE", str(tmp_path))
    val = load_dataset(str(SHARED / "cifar10-jpeg.npz"), "val")
    assert val.images.shape == (10000, 32, 32, 3) and np.bincount(val.labels).tolist() == [1000] * 10
    cached = list(tmp_path.glob("cifar10-*-test.npz"))
    assert len(cached) == 1
    again = load_dataset(str(SHARED / "cifar10-jpeg.npz"), "val")
    assert np.array_equal(again.images, val.images)


def test_batches_are_deterministic_resumable_and_sharded():
    ds = load_dataset("digits", "train")
    run = list(iterate_batches(ds, 16, shuffle=True, seed=3, epoch=2, augment=True, limit=6))
    again = list(iterate_batches(ds, 16, shuffle=True, seed=3, epoch=2, augment=True, limit=6))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(run, again))
    resumed = list(iterate_batches(ds, 16, shuffle=True, seed=3, epoch=2, augment=True, limit=6, start=4))
    assert len(resumed) == 2 and torch.equal(resumed[0][0], run[4][0])
    other_epoch = next(iterate_batches(ds, 16, shuffle=True, seed=3, epoch=3))
    assert not torch.equal(other_epoch[1], run[0][1])


def test_training_and_evaluation_resize_alike():
    x = torch.rand(4, 3, 32, 32)
    assert resize_batch(x, 32) is x
    small = resize_batch(x, 24)
    assert small.shape == (4, 3, 24, 24)
    # antialiased when shrinking: a plain bilinear resize (which skips pixels) differs
    plain = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    assert not torch.allclose(small, plain, atol=1e-3)
    ds = load_dataset("digits", "val")
    at_6 = next(iterate_batches(ds, 8, resolution=6))[0]  # the 8x8 digits, shrunk
    full = next(iterate_batches(ds, 8))[0]
    torch.testing.assert_close(at_6, resize_batch(full, 6), rtol=1e-5, atol=1e-5)  # resizing commutes with the norm


def test_trivialaugment_changes_most_images_the_same_way_on_a_resume_and_keeps_labels():
    rng = np.random.default_rng(2)
    images = rng.integers(1, 255, (96, 16, 16, 3), dtype=np.uint8)
    ds = ArrayDataset(images, rng.integers(0, 3, 96), ["a", "b", "c"], "t")
    plain = list(iterate_batches(ds, 48, shuffle=True, seed=5, epoch=1, augment=True))
    strong = list(iterate_batches(ds, 48, shuffle=True, seed=5, epoch=1, augment=True, policy="trivialaugment"))
    again = list(iterate_batches(ds, 48, shuffle=True, seed=5, epoch=1, augment=True, policy="trivialaugment", start=1))
    assert torch.equal(again[0][0], strong[1][0])  # resumable
    changed = 0
    for (x, y), (xs, ys) in zip(plain, strong):
        assert torch.equal(y, ys) and x.shape == xs.shape
        changed += int(((xs - x).abs().amax(dim=(1, 2, 3)) > 1e-5).sum())
    assert 60 <= changed < 96  # one operation per image, after the same crops; identity and zero levels keep a few
    unaugmented = list(iterate_batches(ds, 48, shuffle=True, seed=5, epoch=1, policy="trivialaugment"))
    assert torch.equal(unaugmented[0][0], next(iterate_batches(ds, 48, shuffle=True, seed=5, epoch=1))[0])
    with pytest.raises(ConfigError, match="augment_policy 'rand' is not a policy; choices: none, trivialaugment"):
        next(iterate_batches(ds, 48, augment=True, policy="rand"))


def test_cutout_erases_one_square_per_image_to_the_mean_and_keeps_the_rest():
    rng = np.random.default_rng(1)
    images = rng.integers(1, 255, (64, 16, 16, 3), dtype=np.uint8)
    ds = ArrayDataset(images, rng.integers(0, 3, 64), ["a", "b", "c"], "t")
    plain = list(iterate_batches(ds, 32, shuffle=True, seed=5, epoch=1, augment=True))
    cut = list(iterate_batches(ds, 32, shuffle=True, seed=5, epoch=1, augment=True, cutout=6))
    again = list(iterate_batches(ds, 32, shuffle=True, seed=5, epoch=1, augment=True, cutout=6, start=1))
    assert torch.equal(again[0][0], cut[1][0])  # resumable: same squares from the same batch
    areas = []
    for (x, y), (xc, yc) in zip(plain, cut):
        assert torch.equal(y, yc)
        erased = (xc != x).any(dim=1)  # N, H, W
        # what changed is the mean: zero in every channel after normalisation
        assert torch.all(xc.abs().amax(dim=1)[erased] < 1e-6)
        for mask in erased:
            rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
            # one axis-aligned rectangle of at most 6x6 pixels (clipped at the border)
            assert len(rows) <= 6 and len(cols) <= 6
            assert int(mask.sum()) == len(rows) * len(cols)
            areas.append(int(mask.sum()))
    assert max(areas) == 36 and min(areas) < 36  # whole squares inside, clipped ones at the border
    assert plain[0][0].shape == cut[0][0].shape
    ranks = [next(iterate_batches(ds, 8, shuffle=True, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert not torch.equal(ranks[0][0], ranks[1][0])
    x, _ = next(iterate_batches(ds, 4, resolution=24))
    assert x.shape == (4, 3, 24, 24) and abs(float(x.mean())) < 2.0
