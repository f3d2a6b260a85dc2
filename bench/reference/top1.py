"""Test top-1 of a bundle's largest subnet (at each resolution of its space) and smallest subnet on the whole CIFAR-10
test split, BN recalibrated as the shipped bundle's figures are: what `package` records, and what `chain.sh` measures
of its full network before the elastic runs start from it.

    python -m bench.reference.top1 --bundle RUN/bundle --calib-data RUN-DATA/cifar10-45k.npz [--test-data ...]
    python -m bench.reference.top1 --bundle RUN/checkpoints/step-N --calib-data ... --largest-only

`--bundle` also takes a checkpoint folder of a run under way (RUN/checkpoints/step-N, its run.json two folders up):
how a long run of the chain is followed. `--largest-only` skips the other resolutions and the smallest subnet.

Prints one JSON line: {"bundle": ..., "test_data": ..., "test_top1": {"largest": ..., "largest@28": ..., ...,
"smallest": ...}}.
With `--ensemble B2 [B3 ...]` it adds "ensemble": the other bundles and "test_top1" its "ensemble" figure, the top-1
of the mean softmax of every bundle's largest subnet (each BN recalibrated the same way): the teacher that `chain.sh`
builds from the full network and the bundles under extra-teachers/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from bench.reference import DATA_HELP, cifar10_archive
from ofakit.arch import ArchConfig
from ofakit.bundle import check_state_dict, load_bundle
from ofakit.errors import OfakitError
from ofakit.supernet import Supernet, build_supernet, extract_subnet
from ofakit.train.checkpoint import load_checkpoint
from ofakit.train.data import ArrayDataset, iterate_batches, load_dataset
from ofakit.train.evaluate import EvalConfig, evaluate_subnet, recalibrate
from ofakit.train.run_dir import checkpoint_run_record, is_checkpoint

# the whole test split in batches of 500; BN statistics from 32 batches of 64 training images
EVAL = EvalConfig(batch_size=500, recalibration_batches=32, recalibration_batch_size=64)


def measure_top1(supernet: torch.nn.Module, archs: dict[str, ArchConfig], calib: ArrayDataset,
                 test: ArrayDataset) -> dict[str, float]:
    """Top-1 (0-1) of each named subnet on all of `test`, BN recalibrated on `calib`'s training images; on the GPU
    when there is one (the subnet is extracted and moved there; `supernet` stays where it is)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {name: evaluate_subnet(supernet, arch, calib, test, EVAL, device=device) for name, arch in archs.items()}


@torch.no_grad()
def ensemble_top1(supernets: list[torch.nn.Module], arch: ArchConfig, calib: ArrayDataset,
                  test: ArrayDataset) -> float:
    """Top-1 (0-1) on all of `test` of the mean softmax of `arch` extracted from each supernet, each BN recalibrated
    as `measure_top1` does (as `EnsembleTeacher` averages its members)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    members = [recalibrate(extract_subnet(s, arch).to(device), calib, arch.resolution, EVAL, device=device)
               for s in supernets]
    correct = 0
    for x, y in iterate_batches(test, EVAL.batch_size, resolution=arch.resolution, device=device):
        probs = torch.stack([m(x).softmax(dim=1) for m in members]).mean(dim=0)
        correct += int((probs.argmax(dim=1) == y).sum())
    return correct / len(test)


def load_weights(path: str, num_classes: int) -> Supernet:
    """A bundle's supernet, or the supernet of a run's checkpoint folder (RUN/checkpoints/step-N: its space from
    RUN/run.json, `num_classes` outputs), in eval mode on the CPU."""
    folder = Path(path)
    if not is_checkpoint(folder):
        return load_bundle(folder)[0]
    record = checkpoint_run_record(folder)
    supernet = build_supernet(record.recipe["space"], num_classes=num_classes)
    weights = load_checkpoint(folder).model
    check_state_dict(supernet.state_dict(), weights, what=path, space=record.recipe["space"])
    supernet.load_state_dict(weights)
    return supernet.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="a bundle, or a run's checkpoint folder (RUN/checkpoints/step-N)")
    p.add_argument("--calib-data", required=True, help="data whose train split recalibrates BN")
    p.add_argument("--test-data", default=cifar10_archive(),
                   help="data whose val split is the test set (all of it is used); default: " + DATA_HELP)
    p.add_argument("--ensemble", nargs="+", default=[], metavar="BUNDLE",
                   help="also the top-1 of the ensemble of every bundle's largest subnet (this one's and these)")
    p.add_argument("--largest-only", action="store_true",
                   help="the largest subnet at its own resolution only (no other resolution, no smallest subnet)")
    args = p.parse_args(argv)
    calib, test = load_dataset(args.calib_data, "train"), load_dataset(args.test_data, "val")
    try:
        supernet = load_weights(args.bundle, test.num_classes)
    except OfakitError as exc:
        raise SystemExit(f"error: {exc}") from None
    space = supernet.space
    largest = space.largest()
    archs = {"largest": largest}
    if not args.largest_only:
        archs.update({f"largest@{r}": dataclasses.replace(largest, resolution=r)
                      for r in sorted(space.resolutions, reverse=True) if r != largest.resolution})
        archs["smallest"] = space.smallest()
    top1 = measure_top1(supernet, archs, calib, test)
    out: dict[str, object] = {"bundle": args.bundle, "test_data": f"{args.test_data} (val split)"}
    if args.ensemble:
        others = [load_weights(path, test.num_classes) for path in args.ensemble]
        for path, other in zip(args.ensemble, others):
            if other.space.name != space.name:
                p.error(f"{path} is a bundle of {other.space.name!r}, not {space.name!r}")
        top1["ensemble"] = ensemble_top1([supernet, *others], largest, calib, test)
        out["ensemble"] = args.ensemble
    out["test_top1"] = {k: round(v, 4) for k, v in top1.items()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
