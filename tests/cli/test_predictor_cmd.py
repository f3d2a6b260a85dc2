"""`ofakit predictor fit` end to end on a tiny bundle and digits, resuming from its records."""
from __future__ import annotations

import torch

from ofakit.bundle import read_bundle_info, save_bundle
from ofakit.cli.main import main
from ofakit.predict.accuracy import AccuracyPredictor
from ofakit.predict.records import RECORDS, read_records
from ofakit.supernet import build_supernet


def test_fit_stores_a_predictor_and_resumes(tmp_path, capsys):
    torch.manual_seed(0)
    save_bundle(tmp_path, build_supernet("tiny", num_classes=10))
    argv = ["predictor", "fit", "--bundle", str(tmp_path), "--data", "digits", "--samples", "12",
            "--val-batches", "1", "--calibration-batches", "1"]
    assert main(argv) == 0
    records = read_records(tmp_path / RECORDS)
    assert len(records) == 12 and all(0 <= v <= 1 for v in records.values())
    pred = AccuracyPredictor.load(tmp_path)
    assert pred.space == "tiny" and pred.meta["samples"] == 12 and pred.meta["data"] == "digits"
    recorded = read_bundle_info(tmp_path).metrics["predictor"]  # bundle.json's provenance follows the predictor
    assert recorded["kind"] == pred.kind and recorded["heldout"] == pred.meta["heldout"]
    assert recorded["evaluation"] == {"data": "digits", "val_images": 256, "calibration_images": 64, "seed": 0}
    before = (tmp_path / RECORDS).read_text()
    assert main(argv) == 0  # everything evaluated already: no new records
    assert (tmp_path / RECORDS).read_text() == before
    capsys.readouterr()
    assert main(["predictor", "fit", "--bundle", str(tmp_path), "--data", "digits", "--samples", "3"]) == 2
    assert "--samples must be at least 12" in capsys.readouterr().err
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for flag, value in (("--val-batches", "0"), ("--val-batches", "-1"), ("--calibration-batches", "0")):
        argv = ["predictor", "fit", "--bundle", str(tmp_path), "--data", "digits", "--samples", "12", flag, value]
        assert main(argv) == 2  # before any work: the records, the predictor and bundle.json stay as they were
        assert capsys.readouterr().err.strip() == f"ofakit: error: {flag} must be at least 1" + (
            " (or left out for the whole val split)" if flag == "--val-batches" else "") + f", got {value}"
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == kept


def test_fit_refuses_to_mix_records_measured_another_way(tmp_path, capsys):
    torch.manual_seed(0)
    save_bundle(tmp_path, build_supernet("tiny", num_classes=10))
    argv = ["predictor", "fit", "--bundle", str(tmp_path), "--data", "digits", "--samples", "12",
            "--calibration-batches", "1"]
    assert main(argv + ["--val-batches", "1"]) == 0
    before = (tmp_path / RECORDS).read_text()
    assert AccuracyPredictor.load(tmp_path).meta["evaluation"]["val_images"] == 256
    capsys.readouterr()
    assert main(argv + ["--val-batches", "2"]) == 2
    err = capsys.readouterr().err
    assert "'val_images': 256" in err and "'val_images': 360" in err and "move accuracy_records.jsonl aside" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / RECORDS).read_text() == before


def test_uniform_adds_the_uniform_subnets_to_the_records(tmp_path):
    from ofakit.predict.records import uniform_grid
    from ofakit.space import get_space

    torch.manual_seed(0)
    save_bundle(tmp_path, build_supernet("tiny", num_classes=10))
    assert main(["predictor", "fit", "--bundle", str(tmp_path), "--data", "digits", "--samples", "12",
                 "--val-batches", "1", "--calibration-batches", "1", "--uniform"]) == 0
    records = read_records(tmp_path / RECORDS)
    space = get_space("tiny")
    keys = {space.key(a) for a in records}
    assert {space.key(a) for a in uniform_grid(space)} <= keys and len(keys) == len(records)  # one per network
    assert AccuracyPredictor.load(tmp_path).meta["samples"] == len(records)

