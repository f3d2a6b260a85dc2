"""Scoring a subnet: a capped evaluation sees every class even when the data set is stored sorted by class."""
from __future__ import annotations

import numpy as np
import torch

from ofakit.supernet import build_supernet
from ofakit.train.data import load_dataset
from ofakit.train.evaluate import EvalConfig, evaluate_subnet


def test_a_capped_evaluation_scores_a_random_subset_of_a_class_sorted_split():
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    val = val.subset(np.argsort(val.labels, kind="stable"))  # stored sorted by class, as CIFAR-10's test split
    torch.manual_seed(0)
    supernet = build_supernet("tiny", num_classes=10).eval()
    with torch.no_grad():  # a network that answers class 0 for every image
        supernet.classifier.weight.zero_()
        supernet.classifier.bias.copy_(torch.arange(10, 0, -1, dtype=torch.float32))
    arch = supernet.space.largest()
    share0 = float(np.mean(val.labels == 0))
    whole = evaluate_subnet(supernet, arch, train, val, EvalConfig(batch_size=32, recalibration_batches=1))
    assert abs(whole - share0) < 1e-9  # all of the split: exactly the share of class 0
    capped = [evaluate_subnet(supernet, arch, train, val, EvalConfig(batch_size=32, max_batches=2, seed=s,
                                                                      recalibration_batches=1)) for s in (0, 1)]
    # the first 64 images would all be class 0 (top-1 1.0); a random 64 hold about the class's share
    assert all(c < 0.35 for c in capped), capped
    again = evaluate_subnet(supernet, arch, train, val, EvalConfig(batch_size=32, max_batches=2, seed=0,
                                                                   recalibration_batches=1))
    assert again == capped[0]  # the same subset for the same seed (every subnet is scored on the same images)
