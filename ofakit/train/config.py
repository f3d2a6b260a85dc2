"""Training recipes: YAML files loaded into frozen, typed configs that reject unknown keys and name them."""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, ConfigError

SAMPLERS = ("largest", "progressive", "sandwich", "uniform", "fixed")


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
    subnets_per_step: int = 1  # progressive/uniform: subnets per step; sandwich: random ones besides the extremes
    kd_weight: float = 0.0  # progressive: weight of distillation from the teacher (the full network)
    kd_temperature: float = 1.0  # temperature of the soft targets (teacher or, in sandwich, the largest subnet)
    max_steps: int | None = None  # cap on optimizer steps (smoke runs, tests)
    arch: ArchConfig | None = None  # fixed: the one subnet every step trains, at its resolution (fine-tuning)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"stage {self.name!r}: unknown sampler {self.sampler!r}; choices: {', '.join(SAMPLERS)}")
        if self.epochs < 1 or self.subnets_per_step < 0 or self.lr < 0:
            raise ConfigError(f"stage {self.name!r}: epochs must be >= 1, subnets_per_step >= 0, lr >= 0")
        if (self.sampler == "fixed") != (self.arch is not None):
            raise ConfigError(f"stage {self.name!r}: sampler 'fixed' needs an 'arch' (an ArchConfig mapping), "
                              "and only that sampler takes one")


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
    image_size: int = 224  # ImageFolder images are resized to this once
    dropout: float = 0.1
    teacher: str | None = None  # bundle whose largest subnet teaches; default: the full network after stage 1
    init: str | None = None  # bundle whose weights start the run (fine-tuning); default: fresh initialisation
    sort_channels: bool = True  # sort channels by importance before stages that open smaller expand ratios
    channels_last: bool = True
    bf16: bool = True  # autocast on CUDA
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_every: int = 200  # optimizer steps; also at every stage end
    eval_batch_size: int = 256
    eval_max_batches: int | None = None  # cap on validation batches per subnet
    recalibration_batches: int = 8  # training batches for BN recalibration before each evaluation
    eval_random_subnets: int = 2  # besides the largest and smallest

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("a recipe needs at least one stage")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of everything that shapes the run (used to refuse resuming with another recipe)."""
        data = self.to_dict()
        # keys added after the first release count only when set, so that older run directories still resume
        if data["init"] is None:
            del data["init"]
        for stage in data["stages"]:
            if stage["arch"] is None:
                del stage["arch"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if value is None:
        if type(None) in args or hint is Any:
            return None
        raise ConfigError(f"{where}: a value is required")
    if origin is not None and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value) if not float(value).is_integer() or isinstance(value, float) else value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is ArchConfig:
        if isinstance(value, ArchConfig):
            return value
        try:
            return ArchConfig.from_dict(value)
        except ArchError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        msgs = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), names, n=1)
            msgs.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(msgs)}")
    required = [f.name for f in fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    values = {}
    for key, value in data.items():
        if cls is TrainConfig and key == "stages":
            if not isinstance(value, list):
                raise ConfigError(f"{where}: 'stages' must be a list of stage mappings")
            values[key] = tuple(_build(StageConfig, s, f"{where}: stages[{i}]") for i, s in enumerate(value))
        else:
            values[key] = _coerce(value, hints[key], f"{where}: {key}")
    return cls(**values)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set key=value` (dotted key, list indices; the value is parsed as YAML) to a recipe mapping."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw)
    target: Any = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise ConfigError(f"--set {key}: no list item {part!r}")
            target = target[int(part)]
        elif isinstance(target, dict):
            target = target.setdefault(part, {})
        else:
            raise ConfigError(f"--set {key}: {part!r} is not a mapping")
    last = parts[-1]
    if isinstance(target, list):
        if not last.isdigit() or int(last) >= len(target):
            raise ConfigError(f"--set {key}: no list item {last!r}")
        target[int(last)] = value
    else:
        target[last] = value


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a recipe YAML, apply `--set key=value` overrides (dotted keys, list indices), validate."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {str(path)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    return recipe_from_dict(data, where=f"recipe {path.name}")


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> TrainConfig:
    """Validate a recipe mapping (as read from YAML) into a TrainConfig."""
    cfg = _build(TrainConfig, data, where)
    from ofakit.space import get_space

    space = get_space(cfg.space)  # unknown space: error with close match
    for stage in cfg.stages:
        if stage.arch is not None:
            try:
                space.validate(stage.arch)
            except ArchError as exc:
                raise ConfigError(f"{where}: stage {stage.name!r}: {exc}") from None
    return cfg


__all__ = ["SAMPLERS", "StageConfig", "TrainConfig", "apply_override", "load_recipe", "recipe_from_dict"]
