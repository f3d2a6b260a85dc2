"""Training recipes: YAML files loaded into frozen, typed configs that reject unknown keys and name them."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, ConfigError
from ofakit.io import load_yaml, read_yaml_file
from ofakit.schema import build
from ofakit.train.augment import check_policy

SAMPLERS = ("largest", "progressive", "sandwich", "uniform", "fixed")
# a stage's choice lists: (its key, the space's `choices()` key, what they are)
STAGE_CHOICES = (("kernel", "kernel_size", "kernel sizes"), ("expand", "expand_ratio", "expand ratios"),
                 ("depth", "depth", "depths"), ("width", "width_mult", "width multipliers"))
DEPTHWISE_GRAD = ("auto", "numba", "onednn")  # = ofakit.supernet.depthwise.BACKENDS (imported there with torch)
JOIN_TIMEOUT = 300.0  # seconds a process under torchrun waits for the others to join (`--join-timeout`)


def _at_least(where: str, key: str, value: float | None, low: int) -> None:
    """Refuse `value` (when set) below `low`, naming `key`."""
    if value is not None and value < low:
        raise ConfigError(f"{where}{key} must be >= {low}, got {value}")


def _positive(where: str, key: str, value: float | None) -> None:
    """Refuse `value` (when set) at or below zero, naming `key`."""
    if value is not None and value <= 0:
        raise ConfigError(f"{where}{key} must be > 0, got {value}")


@dataclass(frozen=True)
class StageConfig:
    """One stage of a recipe: which subnets are drawn, for how long, at what learning rate."""

    name: str
    sampler: str = "progressive"  # largest | progressive (OFA) | sandwich (BigNAS) | uniform (SPOS) | fixed
    epochs: int = 1
    warmup_epochs: float = 0.0  # linear warm-up, then cosine decay to zero over the stage
    lr: float = 0.1  # peak learning rate for `base_batch_size` images per optimizer step
    kernel: tuple[int, ...] | None = None  # open choices in this stage (None: all of the space's)
    expand: tuple[float, ...] | None = None
    depth: tuple[int, ...] | None = None
    width: tuple[float, ...] | None = None  # ResNet space only
    resolution: tuple[int, ...] | None = None  # resolutions a step draws from (None: all of the space's)
    subnets_per_step: int = 1  # progressive/uniform: subnets per step; sandwich: random ones besides the extremes
    kd_weight: float = 0.0  # weight of distillation from the teacher (sandwich: of the largest subnet's; 0: labels)
    kd_temperature: float = 1.0  # temperature of the soft targets (teacher or, in sandwich, the largest subnet)
    max_steps: int | None = None  # cap on optimizer steps (smoke runs, tests)
    arch: ArchConfig | None = None  # fixed: the one subnet every step trains, at its resolution (fine-tuning)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"stage {self.name!r}: unknown sampler {self.sampler!r}; choices: {', '.join(SAMPLERS)}")
        where = f"stage {self.name!r}: "
        _at_least(where, "epochs", self.epochs, 1)
        _at_least(where, "max_steps", self.max_steps, 1)
        for key in ("subnets_per_step", "lr", "warmup_epochs", "kd_weight"):
            _at_least(where, key, getattr(self, key), 0)
        _positive(where, "kd_temperature", self.kd_temperature)
        if (self.sampler == "fixed") != (self.arch is not None):
            raise ConfigError(f"stage {self.name!r}: sampler 'fixed' needs an 'arch' (an ArchConfig mapping), "
                              "and only that sampler takes one")
        if self.sampler == "fixed" and self.resolution is not None:
            raise ConfigError(f"stage {self.name!r}: a 'fixed' stage trains at its arch's resolution; "
                              "leave 'resolution' out")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    space: str
    data: str  # 'digits', an .npz array dataset, the CIFAR-10 JPEG .npz, or an ImageFolder directory
    stages: tuple[StageConfig, ...]
    seed: int = 0
    batch_size: int = 64  # images per process per optimizer step (before accumulation)
    base_batch_size: int = 256  # the batch size at which `lr` is given
    scale_lr: bool = True  # lr *= global batch / base_batch_size (global = batch x processes x accumulation)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    decay_bn_and_bias: bool = False  # OFA applies no weight decay to BN parameters and biases
    label_smoothing: float = 0.1
    grad_clip: float | None = None  # max global gradient norm
    grad_accum: int = 1
    augment: bool = True  # random crop + horizontal flip
    cutout: int = 0  # with augment: one square of this side (pixels of the stored images) per image set to the mean
    augment_policy: str = "none"  # with augment: none | trivialaugment (one random operation per image, after the crop)
    image_size: int = 224  # ImageFolder images are resized to this once
    dropout: float = 0.1
    teacher: str | tuple[str, ...] | None = None  # bundle(s) whose largest subnet teaches (several: their mean
    # probabilities); default: the full network after stage 1
    init: str | None = None  # bundle, or another run's checkpoint folder, whose weights start the run
    sort_channels: bool = True  # sort channels by importance before stages that open smaller expand ratios
    channels_last: bool = True
    depthwise_grad: str = "auto"  # CPU weight gradient of 5x5/7x7 depthwise convs: auto | numba | onednn (same result)
    bf16: bool = True  # autocast on CUDA
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_every: int = 200  # optimizer steps; also at every stage end and evaluation
    eval_batch_size: int = 256
    eval_max_batches: int | None = None  # cap on validation batches per subnet
    recalibration_batches: int = 8  # training batches for BN recalibration before each evaluation
    eval_random_subnets: int = 2  # besides the largest and smallest
    eval_every_epochs: int = 0  # also evaluate (and checkpoint) every N epochs within a stage; 0: at stage ends only

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("a recipe needs at least one stage")
        for key in ("batch_size", "grad_accum", "base_batch_size", "image_size", "checkpoint_every",
                    "eval_batch_size", "eval_max_batches", "recalibration_batches"):
            _at_least("", key, getattr(self, key), 1)
        for key in ("seed", "momentum", "weight_decay", "eval_random_subnets"):
            _at_least("", key, getattr(self, key), 0)
        for key in ("label_smoothing", "dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        _positive("", "grad_clip", self.grad_clip)
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0; set nesterov: false for plain SGD")
        if self.teacher is not None and not self.teacher:
            raise ConfigError("teacher names no bundle: give a bundle path, a list of them, or leave it out (the run's "
                              "own full network teaches)")
        if self.depthwise_grad not in DEPTHWISE_GRAD:
            raise ConfigError(f"depthwise_grad {self.depthwise_grad!r} is not a backend; choices: "
                              f"{', '.join(DEPTHWISE_GRAD)}")
        if self.cutout < 0:
            raise ConfigError(f"cutout must be >= 0 (the side of the erased square in pixels; 0: off), "
                              f"got {self.cutout}")
        check_policy(self.augment_policy)
        if self.eval_every_epochs < 0:
            raise ConfigError(f"eval_every_epochs must be >= 0 (evaluate every N epochs within a stage; 0: at each "
                              f"stage's end only), got {self.eval_every_epochs}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of everything that shapes the run (used to refuse resuming with another recipe)."""
        data = self.to_dict()
        # keys added after the first release count only when set, so that older run directories still resume
        if data["init"] is None:
            del data["init"]
        if data["cutout"] == 0:
            del data["cutout"]
        if data["augment_policy"] == "none":
            del data["augment_policy"]
        del data["depthwise_grad"]  # how a gradient is computed, not what it is: never a reason to refuse a resume
        del data["eval_every_epochs"]  # how often a run is evaluated changes no weight: no reason to refuse either
        for stage in data["stages"]:
            for key in ("arch", "resolution"):
                if stage[key] is None:
                    del stage[key]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set key=value` (dotted key, list indices; the value is parsed as YAML) to a recipe mapping."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    try:
        value = load_yaml(raw)  # as the recipe file's values are read
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not YAML ({str(exc).splitlines()[0]})") from None
    target: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise ConfigError(f"--set {key}: no list item {part!r} (the list has {len(target)})")
            if last:
                target[int(part)] = value
            else:
                target = target[int(part)]
        elif isinstance(target, dict):
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, {})
        else:
            where = ".".join(parts[:i])
            raise ConfigError(f"--set {key}: {where} is {target!r}, not a mapping or a list")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a recipe YAML, apply `--set key=value` overrides (dotted keys, list indices), validate."""
    path = Path(path)
    data = read_yaml_file(path, "a training recipe")
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    where = f"recipe {path.name}"
    cfg = recipe_from_dict(data, where=where)
    check_teachers(cfg, where)
    return cfg


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> TrainConfig:
    """Validate a recipe mapping (as read from YAML) into a TrainConfig."""
    cfg = build(TrainConfig, data, where)
    from ofakit.errors import UnknownNameError
    from ofakit.space import get_space

    try:
        space = get_space(cfg.space)
    except UnknownNameError as exc:  # the close match, with the recipe named
        raise ConfigError(f"{where}: space: {exc}") from None
    choices = space.choices()
    for stage in cfg.stages:
        for key, name, what in STAGE_CHOICES:
            opened = getattr(stage, key)
            if opened is None:
                continue
            if name not in choices:
                has = [k for k, n, _ in STAGE_CHOICES if n in choices]
                raise ConfigError(f"{where}: stage {stage.name!r}: space {space.name!r} has no {what} to choose "
                                  f"(its stages open {', '.join(has)}); leave {key!r} out")
            if not opened or any(v not in choices[name] for v in opened):
                raise ConfigError(f"{where}: stage {stage.name!r}: {key} {list(opened)} must be a non-empty list of "
                                  f"the space's {what} {list(choices[name])}")
        bad = [r for r in stage.resolution or () if r not in space.resolutions]
        if bad or stage.resolution == ():
            raise ConfigError(f"{where}: stage {stage.name!r}: resolution {list(stage.resolution)} must be a non-empty "
                              f"list of the space's resolutions {list(space.resolutions)}")
        if stage.arch is not None:
            try:
                space.validate(stage.arch)
            except ArchError as exc:
                raise ConfigError(f"{where}: stage {stage.name!r}: {exc}") from None
    return cfg


def teacher_sources(cfg: TrainConfig) -> tuple[str, ...]:
    """The bundles a recipe's `teacher` names (one path, or a list of them); empty when it names none."""
    if cfg.teacher is None:
        return ()
    return (cfg.teacher,) if isinstance(cfg.teacher, str) else tuple(cfg.teacher)


def check_teachers(cfg: TrainConfig, where: str = "recipe", *, num_classes: int | None = None) -> None:
    """Refuse, before any training, a `teacher` that is not a bundle (its bundle.json and weights file) of the
    recipe's space, or, given the data's `num_classes`, one that classifies another number of classes. Reads
    bundle.json and the weights' first bytes only (no torch)."""
    from ofakit.bundle import WEIGHTS, check_safetensors, read_bundle_info
    from ofakit.errors import OfakitError

    sources = teacher_sources(cfg)
    for i, path in enumerate(sources):
        key = "teacher" if isinstance(cfg.teacher, str) else f"teacher[{i}]"
        try:
            info = read_bundle_info(path)
            check_safetensors(Path(path) / WEIGHTS)
        except OfakitError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        if info.space != cfg.space:
            raise ConfigError(f"{where}: {key}: bundle {path} holds a supernet of space {info.space!r}, the recipe "
                              f"trains {cfg.space!r}")
        if num_classes is not None and info.num_classes != num_classes:
            raise ConfigError(f"{where}: {key}: bundle {path} classifies {info.num_classes} classes, but data "
                              f"{cfg.data!r} has {num_classes}; distil from a bundle trained on this data's classes")


__all__ = ["JOIN_TIMEOUT", "SAMPLERS", "STAGE_CHOICES", "StageConfig", "TrainConfig", "apply_override",
           "check_teachers", "load_recipe", "recipe_from_dict", "teacher_sources"]
