"""Recipes load into typed configs; typos, wrong types and bad overrides are refused with their names."""
from __future__ import annotations

from pathlib import Path

import pytest

from ofakit.errors import ConfigError
from ofakit.space import get_space
from ofakit.train.config import load_recipe, recipe_from_dict

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_the_shipped_recipes_are_there():
    names = {p.name for p in RECIPES}
    assert {"ofa-mbv3-imagenet-ps.yaml", "bignas-mbv3-imagenet.yaml", "ofa-mbv3-cifar10-ps.yaml",
            "bignas-mbv3-cifar10.yaml", "tiny-digits.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    cfg = load_recipe(path)
    assert cfg.stages and cfg.digest() == load_recipe(path).digest()


def test_progressive_shrinking_recipe_walks_ofa_stages():
    cfg = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "ofa-mbv3-imagenet-ps.yaml")
    assert [s.name for s in cfg.stages] == ["full", "kernel", "depth-1", "depth-2", "expand-1", "expand-2"]
    assert cfg.stages[0].sampler == "largest" and all(s.kd_weight == 1.0 for s in cfg.stages[1:])
    assert cfg.stages[-1].expand == (3, 4, 6) and cfg.stages[3].depth == (2, 3, 4)


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = "space: tiny\ndata: digits\nstages:\n  - {name: a, sampler: largest}\n"


def test_typo_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'batchsize' \(did you mean 'batch_size'\?\)"):
        load_recipe(_write(tmp_path, BASE + "batchsize: 3\n"))
    with pytest.raises(ConfigError, match=r"stages\[0\]: unknown key\(s\) 'epoch' \(did you mean 'epochs'\?\)"):
        load_recipe(_write(tmp_path, "space: tiny\ndata: digits\nstages:\n  - {name: a, epoch: 2}\n"))


def test_wrong_types_and_values(tmp_path):
    with pytest.raises(ConfigError, match="batch_size: expected an integer, got 'big'"):
        load_recipe(_write(tmp_path, BASE + "batch_size: big\n"))
    with pytest.raises(ConfigError, match="unknown sampler 'sandwitch'"):
        load_recipe(_write(tmp_path, "space: tiny\ndata: digits\nstages:\n  - {name: a, sampler: sandwitch}\n"))
    with pytest.raises(ConfigError, match="missing key.*'stages'"):
        load_recipe(_write(tmp_path, "space: tiny\ndata: digits\n"))
    with pytest.raises(ConfigError, match=r"recipe r.yaml: space: unknown search space 'tinny'.*Did you mean 'tiny'"):
        load_recipe(_write(tmp_path, BASE.replace("space: tiny", "space: tinny")))
    with pytest.raises(ConfigError, match=r"r.yaml: not a training recipe \(not YAML"):
        load_recipe(_write(tmp_path, "space: [tiny\n"))
    with pytest.raises(ConfigError, match="cannot read a training recipe"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder; expected a training recipe"):
        load_recipe(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(BASE.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: not a training recipe \(not UTF-8"):
        load_recipe(tmp_path / "latin1.yaml")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_recipe(_write(tmp_path, "- a\n- b\n"))


def test_overrides(tmp_path):
    cfg = load_recipe(_write(tmp_path, BASE), ["batch_size=8", "stages.0.epochs=3", "grad_clip=1.5"])
    assert cfg.batch_size == 8 and cfg.stages[0].epochs == 3 and cfg.grad_clip == 1.5
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_recipe(_write(tmp_path, BASE), ["batch_size"])
    with pytest.raises(ConfigError, match="no list item '5'"):
        load_recipe(_write(tmp_path, BASE), ["stages.5.epochs=1"])
    with pytest.raises(ConfigError, match="unknown key.*'colour'"):
        load_recipe(_write(tmp_path, BASE), ["colour=1"])


@pytest.mark.parametrize(("assignment", "message"), [
    ("lr=[1,", r"--set lr: value '\[1,' is not YAML"),
    ("stages.0.name.x=1", r"--set stages.0.name.x: stages.0.name is 'a', not a mapping or a list"),
    ("stages.0.epochs.x=1", r"stages\[0\]: epochs: expected an integer, got a mapping"),
    ("stages.x.epochs=1", r"--set stages.x.epochs: no list item 'x'"),
    ("stages.0=3", r"stages\[0\]: expected a mapping, got 3"),
    ("stages.0.lr=fast", r"stages\[0\]: lr: expected a number, got 'fast'"),
    ("seed=.inf", r"seed: expected an integer"),
], ids=["unclosed-list", "into-a-string", "into-a-missing-key", "list-index", "stage-not-a-mapping", "wrong-type", "infinite"])
def test_bad_overrides_are_one_config_error(tmp_path, assignment, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, BASE), [assignment])


FIXED = ("space: tiny\ndata: digits\ninit: runs/tiny/bundle\nstages:\n  - name: ft\n    sampler: fixed\n"
         "    arch: {space: tiny, resolution: 24, depths: [1, 2], kernel_sizes: [3, 5, 7, 3], "
         "expand_ratios: [2, 4, 4, 2]}\n")


def test_fixed_stage_holds_an_arch(tmp_path):
    cfg = load_recipe(_write(tmp_path, FIXED))
    arch = cfg.stages[0].arch
    assert cfg.init == "runs/tiny/bundle" and arch.resolution == 24 and arch.kernel_sizes == (3, 5, 7, 3)
    assert cfg.to_dict()["stages"][0]["arch"]["depths"] == (1, 2)
    assert cfg.digest() == load_recipe(_write(tmp_path, FIXED)).digest()


@pytest.mark.parametrize(("text", "message"), [
    (FIXED.replace("    arch:", "    #"), "sampler 'fixed' needs an 'arch'"),
    (FIXED.replace("sampler: fixed", "sampler: uniform"), "sampler 'fixed' needs an 'arch'.*only that sampler"),
    (FIXED.replace("space: tiny,", "space: ofa-mbv3-cifar,"), "stage 'ft': arch is for space 'ofa-mbv3-cifar'"),
    (FIXED.replace("[3, 5, 7, 3]", "[3, 5, 9, 3]"), "stage 'ft': kernel size 9"),
    (FIXED.replace("resolution: 24,", "resolution: 24, colour: 1,"), r"stages\[0\]: arch: unknown ArchConfig key"),
], ids=["no-arch", "arch-without-fixed", "other-space", "illegal-kernel", "unknown-arch-key"])
def test_fixed_stage_refusals(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, text))


def test_digest_of_a_recipe_without_init_or_arch_is_unchanged(tmp_path):
    # pinned from before `init` and stage `arch` existed: run directories made then still resume
    assert load_recipe(_write(tmp_path, BASE)).digest() == "0eb0bb4aefa2ba24"
    assert load_recipe(_write(tmp_path, BASE + "init: b\n")).digest() != "0eb0bb4aefa2ba24"
    assert load_recipe(_write(tmp_path, BASE + "cutout: 0\n")).digest() == "0eb0bb4aefa2ba24"
    assert load_recipe(_write(tmp_path, BASE + "cutout: 16\n")).digest() != "0eb0bb4aefa2ba24"
    assert load_recipe(_write(tmp_path, BASE + "augment_policy: none\n")).digest() == "0eb0bb4aefa2ba24"
    assert load_recipe(_write(tmp_path, BASE + "augment_policy: trivialaugment\n")).digest() != "0eb0bb4aefa2ba24"
    stages = load_recipe(_write(tmp_path, BASE)).to_dict()["stages"]
    assert all(stage["resolution"] is None for stage in stages)  # the key exists, left out of the digest when unset


def test_a_stage_resolution_must_be_the_spaces(tmp_path):
    recipe = {"space": "ofa-mbv3-cifar", "data": "digits", "stages": [{"name": "a", "resolution": [32]}]}
    cfg = recipe_from_dict(recipe)
    assert cfg.stages[0].resolution == (32,)
    assert cfg.digest() != recipe_from_dict({**recipe, "stages": [{"name": "a"}]}).digest()
    for bad in ([30], []):
        with pytest.raises(ConfigError, match=r"stage 'a': resolution .* the space's resolutions \[24, 28, 32\]"):
            recipe_from_dict({**recipe, "stages": [{"name": "a", "resolution": bad}]})
    arch = get_space("ofa-mbv3-cifar").largest().to_dict()
    with pytest.raises(ConfigError, match="a 'fixed' stage trains at its arch's resolution"):
        recipe_from_dict({**recipe, "stages": [{"name": "a", "sampler": "fixed", "arch": arch, "resolution": [32]}]})


def test_depthwise_grad_is_checked_and_never_changes_the_digest(tmp_path):
    """How the depthwise weight gradient is computed is not what is computed: a run resumes under any backend."""
    for backend in ("auto", "numba", "onednn"):
        cfg = load_recipe(_write(tmp_path, BASE + f"depthwise_grad: {backend}\n"))
        assert cfg.depthwise_grad == backend and cfg.digest() == "0eb0bb4aefa2ba24"
    with pytest.raises(ConfigError, match="depthwise_grad 'mkl' is not a backend; choices: auto, numba, onednn"):
        load_recipe(_write(tmp_path, BASE + "depthwise_grad: mkl\n"))


def test_negative_cutout_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cutout must be >= 0"):
        load_recipe(_write(tmp_path, BASE + "cutout: -4\n"))


def test_an_unknown_augment_policy_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="augment_policy 'autoaugment' is not a policy; choices: none, trivialaugment"):
        load_recipe(_write(tmp_path, BASE + "augment_policy: autoaugment\n"))


def test_eval_every_epochs_is_checked_and_never_changes_the_digest(tmp_path):
    """How often a run is evaluated changes no weight: a run resumes whatever the setting."""
    for every in (0, 1, 10):
        cfg = load_recipe(_write(tmp_path, BASE + f"eval_every_epochs: {every}\n"))
        assert cfg.eval_every_epochs == every and cfg.digest() == "0eb0bb4aefa2ba24"
    with pytest.raises(ConfigError, match="eval_every_epochs must be >= 0 .* got -1"):
        load_recipe(_write(tmp_path, BASE + "eval_every_epochs: -1\n"))


@pytest.mark.parametrize(("assignment", "message"), [
    ("base_batch_size=0", r"base_batch_size must be >= 1, got 0"),
    ("checkpoint_every=0", r"checkpoint_every must be >= 1, got 0"),
    ("eval_batch_size=0", r"eval_batch_size must be >= 1, got 0"),
    ("recalibration_batches=0", r"recalibration_batches must be >= 1, got 0"),
    ("eval_max_batches=0", r"eval_max_batches must be >= 1, got 0"),
    ("image_size=0", r"image_size must be >= 1, got 0"),
    ("momentum=-0.5", r"momentum must be >= 0, got -0.5"),
    ("momentum=0", r"nesterov needs momentum > 0; set nesterov: false"),
    ("weight_decay=-1", r"weight_decay must be >= 0, got -1"),
    ("seed=-1", r"seed must be >= 0, got -1"),
    ("label_smoothing=2", r"label_smoothing must be in \[0, 1\), got 2"),
    ("dropout=1.5", r"dropout must be in \[0, 1\), got 1.5"),
    ("dropout=1", r"dropout must be in \[0, 1\), got 1"),
    ("grad_clip=0", r"grad_clip must be > 0, got 0"),
    ("stages.0.max_steps=0", r"stages\[0\]: stage 'a': max_steps must be >= 1, got 0"),
    ("stages.0.epochs=0", r"stages\[0\]: stage 'a': epochs must be >= 1, got 0"),
    ("stages.0.warmup_epochs=-1", r"stages\[0\]: stage 'a': warmup_epochs must be >= 0, got -1"),
    ("stages.0.kd_weight=-1", r"stages\[0\]: stage 'a': kd_weight must be >= 0, got -1"),
    ("stages.0.kd_temperature=0", r"stages\[0\]: stage 'a': kd_temperature must be > 0, got 0"),
])
def test_numbers_out_of_range_are_one_error_naming_the_key(tmp_path, assignment, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, BASE), [assignment])


def test_the_edges_of_the_ranges_are_allowed(tmp_path):
    cfg = load_recipe(_write(tmp_path, BASE), ["momentum=0", "nesterov=false", "weight_decay=0", "seed=0",
                                               "label_smoothing=0", "dropout=0.99", "grad_clip=0.01",
                                               "eval_max_batches=1", "stages.0.max_steps=1", "stages.0.kd_weight=0"])
    assert cfg.momentum == 0 and cfg.dropout == 0.99 and cfg.stages[0].max_steps == 1


@pytest.mark.parametrize(("space", "stage", "message"), [
    ("tiny", {"kernel": [3, 9]}, r"stage 'a': kernel \[3, 9\] must be a non-empty list of the space's kernel sizes "
                                 r"\[3, 5, 7\]"),
    ("tiny", {"expand": [2, 6]}, r"stage 'a': expand \[2, 6\] must be .* expand ratios \[2, 4\]"),
    ("tiny", {"depth": []}, r"stage 'a': depth \[\] must be a non-empty list of the space's depths \[1, 2\]"),
    ("tiny", {"width": [1.0]}, r"stage 'a': space 'tiny' has no width multipliers to choose \(its stages open "
                               r"kernel, expand, depth\); leave 'width' out"),
    ("ofa-resnet50", {"kernel": [3]}, r"space 'ofa-resnet50' has no kernel sizes to choose .*leave 'kernel' out"),
    ("ofa-resnet50", {"width": [0.5]}, r"width \[0.5\] must be .* width multipliers \[0.65, 0.8, 1.0\]"),
], ids=["kernel", "expand", "empty-depth", "width-on-mbconv", "kernel-on-resnet", "resnet-width"])
def test_a_stages_choices_are_checked_when_the_recipe_loads(space, stage, message):
    """Not when the stage starts, after the stages before it trained."""
    recipe = {"space": space, "data": "digits", "stages": [{"name": "full", "sampler": "largest"},
                                                           {"name": "a", **stage}]}
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(recipe)


def _bundle_json(path, space="tiny", num_classes=10):
    path.mkdir()
    (path / "bundle.json").write_text(f'{{"space": "{space}", "num_classes": {num_classes}}}')
    (path / "supernet.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")  # an empty safetensors file
    return path


def test_teacher_bundles_are_checked_when_the_recipe_loads(tmp_path):
    good, other = _bundle_json(tmp_path / "good"), _bundle_json(tmp_path / "other", space="ofa-mbv3-cifar")
    recipe = _write(tmp_path, BASE)
    assert load_recipe(recipe, [f"teacher=[{good}, {good}]"]).teacher == (str(good), str(good))
    with pytest.raises(ConfigError, match=r"recipe r.yaml: teacher: '.*nope' is not a bundle: no bundle.json"):
        load_recipe(recipe, [f"teacher={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match=r"recipe r.yaml: teacher\[1\]: bundle .*other holds a supernet of space "
                                          r"'ofa-mbv3-cifar', the recipe trains 'tiny'"):
        load_recipe(recipe, [f"teacher=[{good}, {other}]"])
    (good / "supernet.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"teacher: .*supernet.safetensors is not a safetensors file"):
        load_recipe(recipe, [f"teacher={good}"])


def test_numbers_in_exponent_notation_are_numbers_and_keep_the_digest(tmp_path):
    """YAML 1.1 reads `1e-3` as a string: a recipe takes it as the number it is, in the file and in --set."""
    plain = load_recipe(_write(tmp_path, BASE), ["stages.0.lr=0.001", "batch_size=100"])
    assert plain.stages[0].lr == 0.001
    for text, sets in ((BASE.replace("sampler: largest}", "sampler: largest, lr: 1e-3}") + "batch_size: 1e2\n", []),
                       (BASE, ["stages.0.lr=1e-3", "batch_size=1e2"])):
        cfg = load_recipe(_write(tmp_path, text), sets)
        assert cfg.stages[0].lr == 0.001 and cfg.batch_size == 100 and cfg.digest() == plain.digest()
    with pytest.raises(ConfigError, match="batch_size: expected an integer, got 0.5"):
        load_recipe(_write(tmp_path, BASE), ["batch_size=5e-1"])


def test_a_key_given_twice_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml: not a training recipe \(not YAML: duplicate key 'seed' "
                                          r"\(line 6\)"):
        load_recipe(_write(tmp_path, BASE + "seed: 1\nseed: 2\n"))
    with pytest.raises(ConfigError, match=r"--set stages.0: .*duplicate key 'lr'"):
        load_recipe(_write(tmp_path, BASE), ["stages.0={name: a, lr: 0.1, lr: 0.2}"])
