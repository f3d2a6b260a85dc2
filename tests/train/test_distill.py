"""The frozen teacher a run distils from: a bundle's largest subnet, or several bundles' averaged as one ensemble."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ofakit.bundle import save_bundle
from ofakit.errors import BundleError, ConfigError
from ofakit.space import get_space
from ofakit.supernet import build_supernet, extract_subnet
from ofakit.supernet.calibrate import recalibrate_bn
from ofakit.train.config import recipe_from_dict
from ofakit.train.data import iterate_batches, load_dataset
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


def _train_split(cfg):
    return load_dataset(cfg.data, "train", image_size=cfg.image_size)


def _teacher(cfg, tmp_path):
    return make_teacher(cfg, tmp_path, build_supernet("tiny", num_classes=10), get_space("tiny"),
                        torch.device("cpu"), torch.contiguous_format, Processes(), _train_split(cfg))


def recalibrated_largest(net, cfg):
    """The largest subnet of `net` with its BN statistics re-estimated as a teacher's are: the run's training
    images, unaugmented, the recipe's number of batches of 64, at the largest resolution."""
    space = get_space(cfg.space)
    sub = extract_subnet(net, space.largest())
    recalibrate_bn(sub, (x for x, _ in iterate_batches(_train_split(cfg), 64, resolution=space.largest().resolution,
                                                       shuffle=True, seed=cfg.seed,
                                                       limit=cfg.recalibration_batches)))
    return sub.eval()


def test_one_teacher_bundle_is_its_largest_subnet_with_its_batch_norms_recalibrated(tmp_path):
    net = _bundle(tmp_path / "a", seed=1)
    cfg = recipe_from_dict(tiny_recipe(teacher=str(tmp_path / "a"), recalibration_batches=3))
    assert teacher_sources(cfg) == (str(tmp_path / "a"),)
    teacher = _teacher(cfg, tmp_path)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(teacher(x), recalibrated_largest(net, cfg)(x), rtol=1e-4, atol=1e-4)
    assert not any(p.requires_grad for p in teacher.parameters())
    # the bundle's stored statistics (which belong to no subnet in particular) are not the teacher's
    stored = extract_subnet(net, get_space("tiny").largest()).eval()(x)
    assert not torch.allclose(teacher(x), stored, atol=1e-2)


def test_several_teacher_bundles_average_their_probabilities(tmp_path):
    nets = [_bundle(tmp_path / "a", seed=1), _bundle(tmp_path / "b", seed=2)]
    cfg = recipe_from_dict(tiny_recipe(teacher=[str(tmp_path / "a"), str(tmp_path / "b")]))
    teacher = _teacher(cfg, tmp_path)
    assert isinstance(teacher, EnsembleTeacher) and len(teacher.members) == 2
    x = torch.randn(4, 3, 32, 32)
    probs = [F.softmax(recalibrated_largest(n, cfg)(x), dim=1) for n in nets]
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


def test_a_teacher_of_other_classes_is_refused_before_anything_trains(tmp_path):
    torch.manual_seed(0)
    save_bundle(tmp_path / "three", build_supernet("tiny", num_classes=3), dataset="abc")
    cfg = recipe_from_dict(tiny_recipe(teacher=[str(tmp_path / "three")]))
    with pytest.raises(ConfigError, match=r"teacher\[0\]: bundle .*three classifies 3 classes, but data 'digits' has "
                                          r"10; distil from a bundle trained on this data's classes"):
        run_training(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_damaged_stored_teacher_is_one_error_naming_it(tmp_path):
    from safetensors.torch import save_file

    cfg = recipe_from_dict(tiny_recipe())  # no teacher bundle: the run's own full network, stored
    stored = tmp_path / "teacher.safetensors"
    stored.write_bytes(b"garbage")
    with pytest.raises(BundleError, match=r"teacher.safetensors is not a safetensors file"):
        _teacher(cfg, tmp_path)
    save_file({"w": torch.zeros(2)}, str(stored))
    with pytest.raises(BundleError, match=r"the run's teacher .*teacher.safetensors does not fit space 'tiny': "
                                          r".* missing.*1 unexpected: w"):
        _teacher(cfg, tmp_path)
    stored.write_bytes(stored.read_bytes()[:-4])
    with pytest.raises(BundleError, match=r"cannot read the run's teacher .*teacher.safetensors"):
        _teacher(cfg, tmp_path)


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


def test_a_sandwich_step_with_a_kd_weight_distils_the_largest_from_the_teacher_and_the_rest_in_place():
    """The step's loss is the largest's cross-entropy plus kd_weight x its distillation from the teacher, plus each
    other subnet's distillation from the largest: the sum StepModule returns, term for term."""
    from ofakit.train.config import StageConfig
    from ofakit.train.loop import StepModule
    from ofakit.train.sampling import plan_step

    space = get_space("tiny")
    torch.manual_seed(0)
    supernet, teacher = build_supernet("tiny", num_classes=10).eval(), build_supernet("tiny", num_classes=10).eval()
    teacher = extract_subnet(teacher, space.largest())
    stage = StageConfig(name="s", sampler="sandwich", subnets_per_step=1, kd_weight=0.5, kd_temperature=2.0)
    plan = plan_step(space, stage, seed=0, step=0)
    x, y = torch.randn(8, 3, plan.resolution, plan.resolution), torch.randint(0, 10, (8,))
    with torch.no_grad():
        got = StepModule(supernet, teacher, label_smoothing=0.1)(x, y, plan, stage)
        logits = []
        for arch in plan.archs:
            supernet.set_active(arch)
            logits.append(supernet(x))
        want = (F.cross_entropy(logits[0], y, label_smoothing=0.1)
                + 0.5 * soft_cross_entropy(logits[0], teacher(x), 2.0)
                + sum(soft_cross_entropy(other, logits[0], 2.0) for other in logits[1:]))
        untaught = StageConfig(name="s", sampler="sandwich", subnets_per_step=1, kd_temperature=2.0)
        plain = StepModule(supernet, teacher, label_smoothing=0.1)(x, y, plan_step(space, untaught, seed=0, step=0),
                                                                   untaught)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert plain < got  # without the weight the teacher's term is left out
