"""The frozen teacher a run distils from: a bundle's largest subnet, or several bundles' averaged as one ensemble."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ofakit.bundle import save_bundle
from ofakit.errors import ConfigError
from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.train.config import recipe_from_dict
from ofakit.train.distill import EnsembleTeacher, make_teacher, soft_cross_entropy, teacher_sources
from ofakit.train.distributed import Processes
from ofakit.train.loop import run_training

from tests.train.test_loop import tiny_recipe


def _bundle(path, seed: int, space: str = "tiny"):
    torch.manual_seed(seed)
    net = build_supernet(space, num_classes=10)
    for m in net.modules():  # non-trivial BN statistics, so that folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    save_bundle(path, net, dataset="digits")
    return net


def _teacher(cfg, tmp_path):
    return make_teacher(cfg, tmp_path, build_supernet("tiny", num_classes=10), get_space("tiny"),
                        torch.device("cpu"), torch.contiguous_format, Processes())


def test_one_teacher_bundle_is_its_largest_subnet(tmp_path):
    net = _bundle(tmp_path / "a", seed=1)
    cfg = recipe_from_dict(tiny_recipe(teacher=str(tmp_path / "a")))
    assert teacher_sources(cfg) == (str(tmp_path / "a"),)
    teacher = _teacher(cfg, tmp_path)
    x = torch.randn(4, 3, 32, 32)
    expected = extract_subnet(net, get_space("tiny").largest()).eval()(x)
    torch.testing.assert_close(teacher(x), expected, rtol=1e-4, atol=1e-4)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_several_teacher_bundles_average_their_probabilities(tmp_path):
    nets = [_bundle(tmp_path / "a", seed=1), _bundle(tmp_path / "b", seed=2)]
    cfg = recipe_from_dict(tiny_recipe(teacher=[str(tmp_path / "a"), str(tmp_path / "b")]))
    teacher = _teacher(cfg, tmp_path)
    assert isinstance(teacher, EnsembleTeacher) and len(teacher.members) == 2
    x = torch.randn(4, 3, 32, 32)
    probs = [F.softmax(extract_subnet(n, get_space("tiny").largest()).eval()(x), dim=1) for n in nets]
    out = teacher(x)
    torch.testing.assert_close(F.softmax(out, dim=1), (probs[0] + probs[1]) / 2, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(F.softmax(out, dim=1), probs[0], atol=1e-3)  # both members count
    # at temperature 1 the soft target is the averaged distribution itself
    student = torch.randn(4, 10)
    expected = -(((probs[0] + probs[1]) / 2) * F.log_softmax(student, dim=1)).sum(1).mean()
    torch.testing.assert_close(soft_cross_entropy(student, out), expected, rtol=1e-4, atol=1e-5)


def test_a_teacher_of_another_space_or_an_empty_list_is_refused(tmp_path):
    _bundle(tmp_path / "c", seed=1, space="ofa-mbv3-cifar")
    cfg = recipe_from_dict(tiny_recipe(teacher=[str(tmp_path / "c")]))
    with pytest.raises(ConfigError, match="is for space 'ofa-mbv3-cifar', not 'tiny'"):
        _teacher(cfg, tmp_path)
    with pytest.raises(ConfigError, match="teacher"):
        recipe_from_dict(tiny_recipe(teacher=[]))


def test_a_run_distils_from_an_ensemble_of_bundles(tmp_path):
    _bundle(tmp_path / "a", seed=1)
    _bundle(tmp_path / "b", seed=2)
    recipe = tiny_recipe(teacher=[str(tmp_path / "a"), str(tmp_path / "b")], stages=[
        {"name": "full-kd", "sampler": "largest", "epochs": 1, "lr": 0.05, "max_steps": 2, "kd_weight": 1.0}])
    cfg = recipe_from_dict(recipe)
    assert cfg.digest() != recipe_from_dict({**recipe, "teacher": str(tmp_path / "a")}).digest()
    bundle, _ = run_training(cfg, tmp_path / "run", progress=False)
    assert (bundle / "bundle.json").is_file()
    assert not (tmp_path / "run" / "teacher.safetensors").exists()  # the bundles teach, not the run's own weights
