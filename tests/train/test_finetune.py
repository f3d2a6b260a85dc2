"""Fine-tuning one subnet of a tiny supernet on digits: it learns, it touches only the weights the subnet uses, it
records what it did, and a killed run resumes to the very same weights."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ofakit.arch import ArchConfig
from ofakit.bundle import load_bundle
from ofakit.errors import ArchError, ConfigError
from ofakit.space import get_space
from ofakit.space.mbconv import mid_channels
from ofakit.train.config import recipe_from_dict
from ofakit.train.data import load_dataset
from ofakit.train.evaluate import EvalConfig, evaluate_subnet
from ofakit.train.finetune import FinetuneConfig, finetune, finetune_recipe
from ofakit.train.loop import run_training

REPO = Path(__file__).resolve().parents[2]
QUICK = ["augment=false", "dropout=0.0", "eval_max_batches=1", "recalibration_batches=1"]


def small_arch() -> ArchConfig:
    """Blocks 0 and 2 of 4 (kernel 5, then 3; expand 2 of 4), at 24 px."""
    return dataclasses.replace(get_space("tiny").smallest(), resolution=24, kernel_sizes=(5, 3, 3, 3))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny supernet bundle briefly trained with the sandwich rule (its subnets are far from converged)."""
    recipe = recipe_from_dict({
        "space": "tiny", "data": "digits", "seed": 0, "batch_size": 32, "base_batch_size": 32, "augment": False,
        "dropout": 0.0, "eval_max_batches": 1, "recalibration_batches": 1, "eval_random_subnets": 0,
        "stages": [{"name": "s", "sampler": "sandwich", "epochs": 1, "lr": 0.1, "max_steps": 8}]})
    bundle, _ = run_training(recipe, tmp_path_factory.mktemp("source") / "run", progress=False)
    return bundle


def _state(bundle: Path) -> dict[str, torch.Tensor]:
    return load_file(str(bundle / "supernet.safetensors"))


def test_finetuning_improves_the_subnet_and_records_it(source, tmp_path):
    arch = small_arch()
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    cfg = EvalConfig(recalibration_batches=4)
    before = evaluate_subnet(load_bundle(source)[0], arch, train, val, cfg)
    recipe = finetune_recipe(source, arch, "digits", FinetuneConfig(epochs=1, batch_size=32, lr=0.05),
                             ["augment=false", "dropout=0.0", "recalibration_batches=4"])
    result = finetune(recipe, tmp_path / "ft", progress=False)
    after = evaluate_subnet(load_bundle(result.bundle)[0], arch, train, val, cfg)
    assert after > before + 0.1, (before, after)
    assert result.top1 == pytest.approx(after, abs=1e-4)

    assert ArchConfig.load(result.arch) == arch
    info = load_bundle(result.bundle)[1]
    assert info.training["recipe"] == "finetune"
    assert info.training["finetuned"] == {"from_bundle": str(source), "arch": arch.to_dict(), "epochs": 1,
                                          "steps": 44}
    assert set(info.metrics) == {"subnet"} and info.metrics["subnet"]["arch"] == arch.to_dict()
    assert not (tmp_path / "ft" / "teacher.safetensors").exists()

    old, new = _state(source), _state(result.bundle)
    skipped = [k for k in old if k.startswith(("blocks.1.", "blocks.3.", "blocks.0.dw_conv.transform_5to3"))]
    assert skipped and all(torch.equal(old[k], new[k]) for k in skipped)  # no gradient ever reached them
    used = ["stem_conv.weight", "blocks.0.expand_conv.weight", "blocks.2.dw_conv.transform_5to3", "classifier.bias"]
    assert all(not torch.equal(old[k], new[k]) for k in used)


def test_only_the_subnets_slices_change_without_weight_decay(source, tmp_path):
    recipe = finetune_recipe(source, small_arch(), "digits", FinetuneConfig(epochs=1, batch_size=32,
                                                                          weight_decay=0.0),
                             [*QUICK, "stages.0.max_steps=3"])
    result = finetune(recipe, tmp_path / "ft", progress=False)
    old, new = _state(source), _state(result.bundle)
    net = load_bundle(source)[0]
    for slot in (0, 2):
        mid = mid_channels(net.blocks[slot].in_channels, 2)
        p = f"blocks.{slot}."
        for key, rest in ((f"{p}expand_conv.weight", (slice(mid, None),)),
                          (f"{p}expand_bn.running_mean", (slice(mid, None),)),
                          (f"{p}dw_conv.weight", (slice(mid, None),)),
                          (f"{p}dw_bn.weight", (slice(mid, None),)),
                          (f"{p}project_conv.weight", (slice(None), slice(mid, None)))):
            assert torch.equal(old[key][rest], new[key][rest]), key  # channels the subnet does not have
            assert not torch.equal(old[key], new[key]), key  # ... while its own ones learned
    ring = torch.ones(7, 7, dtype=torch.bool)
    ring[1:6, 1:6] = False  # kernel 5 reads the centre of the 7x7 filter
    assert torch.equal(old["blocks.0.dw_conv.weight"][..., ring], new["blocks.0.dw_conv.weight"][..., ring])


def test_distillation_from_the_bundles_largest_subnet(source, tmp_path):
    recipe = finetune_recipe(source, small_arch(), "digits", FinetuneConfig(epochs=1, batch_size=32,
                                                                          kd_weight=1.0),
                             [*QUICK, "stages.0.max_steps=2"])
    finetune(recipe, tmp_path / "ft", progress=False)
    # the bundle's largest subnet, its BN statistics re-estimated on the fine-tuning data (the bundle's own belong
    # to no subnet in particular)
    from tests.train.test_distill import recalibrated_largest

    teacher = load_file(str(tmp_path / "ft" / "teacher.safetensors"))
    expected = recalibrated_largest(load_bundle(source)[0], recipe).state_dict()
    assert teacher.keys() == expected.keys()
    for k in expected:  # the run's layout is channels_last: BN statistics summed in another order (1e-3 on AMD EPYC)
        stats = k.endswith(("running_mean", "running_var"))
        torch.testing.assert_close(teacher[k], expected[k], rtol=1e-3 if stats else 1e-4, atol=1e-4 if stats else 1e-5)


def test_recipe_refusals(source, tmp_path):
    with pytest.raises(ArchError, match="arch is for space 'ofa-mbv3-cifar', but bundle .* space 'tiny'"):
        finetune_recipe(source, get_space("ofa-mbv3-cifar").largest(), "digits")
    bad = dataclasses.replace(small_arch(), kernel_sizes=(9, 3, 3, 3))
    with pytest.raises(ConfigError, match="stage 'finetune': .*kernel"):
        finetune_recipe(source, bad, "digits")
    with pytest.raises(ConfigError, match="epochs must be a positive integer, got 0"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ConfigError, match="unknown key.*'augmnt'"):
        finetune_recipe(source, small_arch(), "digits", overrides=["augmnt=false"])
    other = recipe_from_dict({"space": "tiny", "data": "digits",
                              "stages": [{"name": "a", "sampler": "fixed", "arch": small_arch().to_dict()}]})
    with pytest.raises(ConfigError, match="starts from a bundle"):
        finetune(other, tmp_path / "x", progress=False)


def test_data_with_other_classes_is_refused(source, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (40, 24, 24, 3), dtype=np.uint8) for s in ("train", "val")}
    arrays.update({f"{s}_labels": np.arange(40) % 3 for s in ("train", "val")})
    np.savez(tmp_path / "three.npz", **arrays)
    recipe = finetune_recipe(source, small_arch(), str(tmp_path / "three.npz"), FinetuneConfig(batch_size=8))
    with pytest.raises(ConfigError, match="classifies 10 classes, but data .* has 3"):
        finetune(recipe, tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists()


def _cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "ofakit", "finetune", *args, "--quiet"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


KILL_AT = """
import os, sys
from ofakit.arch import ArchConfig
from ofakit.train.finetune import FinetuneConfig, finetune, finetune_recipe


def kill(step):
    if step == 3:
        os.kill(os.getpid(), 9)


source, arch, out, *overrides = sys.argv[1:]
recipe = finetune_recipe(source, ArchConfig.load(arch), "digits",
                         FinetuneConfig(epochs=1, batch_size=32, kd_weight=0.5), overrides)
finetune(recipe, out, progress=False, on_step=kill)
"""


def test_kill_9_and_resume_gives_bitwise_equal_weights(source, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(small_arch().to_json())
    args = ["--bundle", str(source), "--arch", str(arch), "--data", "digits", "--epochs", "1", "--batch-size", "32",
            "--kd-weight", "0.5", *[x for s in [*QUICK, "checkpoint_every=2", "stages.0.max_steps=6"]
                                    for x in ("--set", s)]]
    reference = _cli([*args, "--out", str(tmp_path / "ref")])
    # the same run, killed (SIGKILL) right after step 3; its last checkpoint is step 2's
    killed = subprocess.Popen([sys.executable, "-c", KILL_AT, str(source), str(arch), str(tmp_path / "run"),
                               *QUICK, "checkpoint_every=2", "stages.0.max_steps=6"],
                              env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    assert killed.wait(timeout=300) == -signal.SIGKILL, killed.stderr.read()
    assert not (tmp_path / "run" / "bundle").exists()
    resumed = _cli([*args, "--out", str(tmp_path / "run")])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    ref, got = _state(tmp_path / "ref" / "bundle"), _state(tmp_path / "run" / "bundle")
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert json.loads((tmp_path / "run" / "arch.json").read_text()) == small_arch().to_dict()
