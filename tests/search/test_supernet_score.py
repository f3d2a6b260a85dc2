"""Scoring subnets with the supernet itself (--score supernet): real top-1 after BN recalibration on a fixed subset of
the data's train split, cached by arch, usable by every sampling search; the val split is never read; without a
predictor or data, one line that says what to give."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ofakit.bundle import save_bundle  # noqa: E402
from ofakit.cli.main import main  # noqa: E402
from ofakit.search import supernet_score as scoring  # noqa: E402
from ofakit.search.algorithms import ALGORITHMS  # noqa: E402
from ofakit.search.constraints import macs_limit  # noqa: E402
from ofakit.search.evolution import EvolutionConfig  # noqa: E402
from ofakit.search.supernet_score import SupernetScore, SupernetScoreConfig, supernet_score  # noqa: E402
from ofakit.space import get_space  # noqa: E402
from ofakit.space.genome import Genome  # noqa: E402
from ofakit.supernet import build_supernet, extract_subnet  # noqa: E402
from ofakit.supernet.calibrate import recalibrate_bn  # noqa: E402
from ofakit.train.data import ArrayDataset, iterate_batches, load_dataset  # noqa: E402


def images(n: int, seed: int = 0, size: int = 32) -> ArrayDataset:
    """Images whose class is the brightest colour channel's index (+3 for a bright top half): learnable, generated."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = x.mean(axis=(1, 2)).argmax(axis=1) + 3 * (x[:, : size // 2].mean(axis=(1, 2, 3)) > 127.5)
    return ArrayDataset(x, labels, [str(i) for i in range(10)], "generated")


def write_data(path, n_train: int = 60, n_val: int = 20):
    tr, va = images(n_train, 0), images(n_val, 1)
    np.savez(path, train_images=tr.images, train_labels=tr.labels, val_images=va.images, val_labels=va.labels)
    return path


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_supernet("tiny", num_classes=10).eval()


def top1_by_hand(supernet, arch, score: SupernetScore) -> float:
    """extract, recalibrate on the calibration subset, count correct on the scored subset (no BN folding)."""
    sub = extract_subnet(supernet, arch)
    calib = next(iterate_batches(score.calib_set, len(score.calib_set), resolution=arch.resolution))[0]
    recalibrate_bn(sub, [calib])
    x, y = next(iterate_batches(score.eval_set, len(score.eval_set), resolution=arch.resolution))
    with torch.no_grad():
        return float((sub(x).argmax(1) == y).float().mean())


def test_scores_are_real_top1_on_disjoint_fixed_subsets_cached_by_arch(tiny, monkeypatch):
    genome = Genome(tiny.space)
    data = images(300)
    score = SupernetScore(tiny, genome, data, SupernetScoreConfig(images=100, calibration_images=50))
    assert len(score.eval_set) == 100 and len(score.calib_set) == 50
    seen = {tuple(map(tuple, s.images.reshape(len(s), -1)[:, :8])) for s in (score.eval_set,)}
    assert not seen & {tuple(map(tuple, score.calib_set.images.reshape(50, -1)[:, :8]))}  # disjoint subsets
    rows = genome.sample(4, np.random.default_rng(0))
    got = score(rows)
    for row, value in zip(rows, got):
        arch = genome.decode(row[None])[0]
        assert value == pytest.approx(top1_by_hand(tiny, arch, score), abs=0.021)  # folding may flip a near tie
    assert score.evaluations == len(set(genome.keys(rows).tolist()))
    calls = []
    monkeypatch.setattr(score, "top1", lambda arch: calls.append(arch) or 0.0)
    twin = rows[:1].copy()
    twin[0, genome.active(twin)[0] == 0] = 0  # another row of the same network: its skipped genes differ
    assert score(np.concatenate([rows, twin])).tolist() == [*got.tolist(), got[0]] and calls == []
    again = SupernetScore(tiny, genome, data, SupernetScoreConfig(images=100, calibration_images=50))
    assert again(rows).tolist() == got.tolist()  # the same subsets: the same scores


def test_a_small_split_lends_its_images_to_the_calibration(tiny):
    score = SupernetScore(tiny, Genome(tiny.space), images(30), SupernetScoreConfig(images=100, calibration_images=50))
    assert len(score.eval_set) == 30 and len(score.calib_set) == 30
    assert score.describe() == {"kind": "supernet", "split": "train", "images": 30, "calibration_images": 30,
                                "seed": 0, "subnets_scored": 0}


def test_labels_beyond_the_supernets_classes_are_refused(tiny):
    data = images(20)
    data.labels[0] = 12
    with pytest.raises(Exception, match="labels up to 12, but the supernet has 10 classes"):
        SupernetScore(tiny, Genome(tiny.space), data)


def test_only_the_train_split_is_read(tiny, tmp_path, monkeypatch):
    save_bundle(tmp_path / "b", tiny)
    splits = []
    monkeypatch.setattr("ofakit.train.data.load_dataset",
                        lambda source, split, **kw: splits.append(split) or load_dataset(source, split, **kw))
    supernet_score(tmp_path / "b", Genome(tiny.space), str(write_data(tmp_path / "d.npz")))
    assert splits == ["train"]


@pytest.mark.parametrize("name", [n for n in ALGORITHMS.names() if n != "gradient"])
def test_every_sampling_search_runs_on_the_supernets_score(tiny, name):
    space = tiny.space
    genome = Genome(space)
    score = SupernetScore(tiny, genome, images(120), SupernetScoreConfig(images=60, calibration_images=60))
    limit = macs_limit(genome, float(np.median([space.macs(space.sample(__import__("random").Random(i)))
                                                for i in range(50)])))
    cfg = EvolutionConfig(population=6, generations=3)
    result = ALGORITHMS.get(name)(genome, score, [limit], cfg, 18, np.random.default_rng(0))
    assert space.macs(result.best) <= limit.maximum
    assert result.score == pytest.approx(top1_by_hand(tiny, result.best, score), abs=0.034)
    assert score.evaluations >= result.evaluations > 0


def test_specialize_scores_with_the_supernet_and_says_so(tmp_path, capsys):
    torch.manual_seed(0)
    bundle = tmp_path / "b"
    save_bundle(bundle, build_supernet("ofa-mbv3-cifar"))
    data = write_data(tmp_path / "d.npz")
    argv = ["specialize", "--device", "cpu-ort", "--latency", "0.9ms", "--no-drift", "--latency-model", "lut",
            "--bundle", str(bundle), "--score", "supernet", "--data", str(data), "--budget", "6",
            "--algorithm", "random", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["score"] == {"kind": "supernet", "split": "train", "images": 60, "calibration_images": 60,
                               "seed": 0, "subnets_scored": report["evaluations"]}
    assert 0 < report["evaluations"] <= 6 and report["latency_ms"] <= 0.9
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["arch"] == report["arch"]  # same seed, same result


def test_no_predictor_and_no_score_names_both_ways(tmp_path, capsys):
    save_bundle(tmp_path / "b", build_supernet("ofa-mbv3-cifar"))
    assert main(["specialize", "--device", "cpu-ort", "--latency", "0.5ms", "--bundle", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no accuracy predictor" in err
    assert "ofakit predictor fit --bundle" in err and "--score supernet --data DATA" in err


@pytest.mark.parametrize("extra, fragment", [
    (["--score", "supernet"], "--score supernet measures subnets on images: give --data DATA"),
    (["--algorithm", "gradient"], "--algorithm gradient measures subnets on images: give --data DATA"),
])
def test_the_supernets_score_without_data_is_one_line(tmp_path, capsys, extra, fragment):
    save_bundle(tmp_path / "b", build_supernet("ofa-mbv3-cifar"))
    assert main(["specialize", "--device", "cpu-ort", "--latency", "0.5ms", "--bundle", str(tmp_path / "b"),
                 *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err


def test_the_subset_sizes_must_be_positive():
    with pytest.raises(Exception, match="images must be positive, got 0"):
        SupernetScoreConfig(images=0)


def test_scores_use_the_bundles_weights(tiny, tmp_path):
    save_bundle(tmp_path / "b", tiny)
    genome = Genome(tiny.space)
    rows = genome.sample(2, np.random.default_rng(1))
    data = str(write_data(tmp_path / "d.npz"))
    loaded = supernet_score(tmp_path / "b", genome, data, SupernetScoreConfig(images=60, calibration_images=60))
    direct = SupernetScore(tiny, genome, load_dataset(data, "train"),
                           SupernetScoreConfig(images=60, calibration_images=60))
    assert loaded(rows).tolist() == pytest.approx(direct(rows).tolist(), abs=0.034)
    assert scoring.SupernetScore is SupernetScore


def test_a_final_choice_scores_on_the_whole_split_with_more_calibration_images(tiny):
    """`on_whole_split` measures every image of the split, its BN statistics from `final_calibration_images` of them
    (more than a search's per-subnet 500 would give: those moved a score by up to 0.9 points)."""
    genome = Genome(tiny.space)
    score = SupernetScore(tiny, genome, images(300), SupernetScoreConfig(images=100, calibration_images=50,
                                                                         final_calibration_images=120))
    arch = tiny.space.largest()
    top = score.on_whole_split(genome.encode([arch]))[0]
    assert len(score.whole.eval_set) == 300 and len(score.whole.calib_set) == 120
    assert top == pytest.approx(top1_by_hand(tiny, arch, score.whole))
    with pytest.raises(Exception, match="final_calibration_images must be positive, got 0"):
        SupernetScoreConfig(final_calibration_images=0)
