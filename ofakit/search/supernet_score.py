"""Score subnets with the trained supernet itself, where no accuracy predictor exists (`--score supernet --data
DATA`), as ENAS (Pham et al., ICML 2018) and AttentiveNAS (Wang et al., CVPR 2021) do.

Each new arch is extracted from the supernet with its weights, its BN statistics are recalibrated on a fixed seeded
subset of DATA's `train` split (OFA's recipe, `ofakit.supernet.calibrate`), BN is folded into the convolutions, and
its top-1 is measured on another fixed seeded subset of the same split: the same images for every arch, so that
scores compare. The `val` split, which `--verify` and the benchmarks report, is never read. Scores are cached by
arch (the genome's key: two rows that build the same network are scored once), so any search over genome rows
(evolution, aging, random, rl) can use it as its score.

The module imports NumPy only; torch comes in when a scorer is built.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.search.progress import SearchProgress
from ofakit.space.genome import Genome


@dataclass(frozen=True)
class SupernetScoreConfig:
    images: int = 1000  # train-split images each subnet's top-1 is measured on (a fixed seeded subset)
    calibration_images: int = 500  # other train-split images for each subnet's BN statistics
    final_calibration_images: int = 2048  # BN statistics of the few subnets of a final choice (`on_whole_split`),
    # as many as a bundle's evaluation recalibrates on (16 batches of 128): with 500, the statistics alone moved a
    # subnet's top-1 on the whole split by up to 0.9 points, more than the finalists of a search differ by
    batch_size: int = 500  # images per forward pass
    seed: int = 0  # picks the two subsets

    def __post_init__(self) -> None:
        for name in ("images", "calibration_images", "final_calibration_images", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"supernet scoring: {name} must be positive, got {getattr(self, name)}")


class SupernetScore:
    """Real top-1 (0-1) of genome rows on a fixed subset of images, each distinct arch measured once.

    Args:
        supernet: the trained supernet (left unchanged: every arch is extracted).
        genome: the rows' layout.
        images: the `train` split of the data (`ofakit.train.data.ArrayDataset`).
        cfg: subset sizes and seed.
        progress: a bar on stderr while subnets are scored (`expected`: how many will be).
    """

    def __init__(self, supernet: Any, genome: Genome, images: Any, cfg: SupernetScoreConfig = SupernetScoreConfig(),
                 *, progress: bool = False, expected: int = 0) -> None:
        if images.labels.size and int(images.labels.max()) >= supernet.num_classes:
            raise ConfigError(f"data {images.name!r} has labels up to {int(images.labels.max())}, but the supernet "
                              f"has {supernet.num_classes} classes: give data of the bundle's task")
        self.supernet, self.genome, self.cfg, self.split = supernet, genome, cfg, images
        order = np.random.default_rng(cfg.seed).permutation(len(images))
        n_eval = min(cfg.images, len(images))
        rest = order[n_eval:]  # calibration images apart from the scored ones where the split has enough
        calib = rest[: cfg.calibration_images] if len(rest) >= cfg.calibration_images \
            else order[-min(cfg.calibration_images, len(images)):]
        self.eval_set, self.calib_set = images.subset(np.sort(order[:n_eval])), images.subset(np.sort(calib))
        # what a search may train on (the gradient search's batches): the split less the scored images, if enough
        self.descent_set = images.subset(np.sort(rest)) if len(rest) >= 256 else images
        self.cache: dict[int, float] = {}
        self._inputs: dict[int, tuple] = {}
        self.show_progress, self.expected = progress, expected
        self.progress: SearchProgress | None = None  # started at the first arch scored
        self.best = -1.0
        self.whole: SupernetScore | None = None  # the scorer on the whole split (`on_whole_split`), made once

    def on_whole_split(self, rows: np.ndarray) -> np.ndarray:
        """Top-1 of `rows` on every image of the split, BN recalibrated on `final_calibration_images` of them (cached
        apart), for a final choice among a few subnets: its noise is about sqrt(images / split size) of the
        subset's."""
        if self.whole is None:
            cfg = replace(self.cfg, images=len(self.split), calibration_images=self.cfg.final_calibration_images)
            self.whole = SupernetScore(self.supernet, self.genome, self.split, cfg, progress=self.show_progress)
        self.whole.expect(len(set(self.genome.keys(rows).tolist()) - set(self.whole.cache)))
        try:
            return self.whole(rows)
        finally:
            self.whole.close()

    @property
    def evaluations(self) -> int:
        """Distinct archs measured so far."""
        return len(self.cache)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        keys = self.genome.keys(rows).tolist()
        out = np.empty(len(rows))
        for i, key in enumerate(keys):
            if key not in self.cache:
                self.cache[key] = self.top1(self.genome.decode(rows[i : i + 1])[0])
                self.best = max(self.best, self.cache[key])
                if self.progress is None:
                    self.progress = SearchProgress(max(1, self.expected), "scoring subnets", enabled=self.show_progress)
                self.progress.advance(note=f"best {100 * self.best:.2f} %")
            out[i] = self.cache[key]
        return out

    def top1(self, arch: ArchConfig) -> float:
        """Top-1 of `arch` on the scored subset after BN recalibration (not cached: `__call__` caches)."""
        import torch

        from ofakit.supernet import extract_subnet
        from ofakit.supernet.calibrate import recalibrate_bn
        from ofakit.supernet.fold import fold_batchnorm

        calib, x, y = self.inputs(arch.resolution)
        bs = self.cfg.batch_size
        with torch.no_grad():
            sub = extract_subnet(self.supernet, arch).to(memory_format=torch.channels_last)
            recalibrate_bn(sub, (calib[i : i + bs] for i in range(0, len(calib), bs)))
            fold_batchnorm(sub)
            correct = sum(int((sub(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum()) for i in range(0, len(x), bs))
        return correct / len(y)

    def inputs(self, resolution: int) -> tuple:
        """(calibration images, scored images, their labels) as tensors at `resolution`, made once."""
        if resolution not in self._inputs:
            import torch

            from ofakit.train.data import iterate_batches

            def tensor(ds: Any) -> tuple:
                x, y = next(iterate_batches(ds, len(ds), resolution=resolution))
                return x.contiguous(memory_format=torch.channels_last), y

            self._inputs[resolution] = (tensor(self.calib_set)[0], *tensor(self.eval_set))
        return self._inputs[resolution]

    def expect(self, total: int) -> None:
        """How many archs the search will score from now on (the bar's length)."""
        self.close()
        self.expected = total

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def describe(self) -> dict[str, Any]:
        """What the scores were measured on, for the report."""
        out = {"kind": "supernet", "split": "train", "images": len(self.eval_set),
               "calibration_images": len(self.calib_set), "seed": self.cfg.seed, "subnets_scored": self.evaluations}
        if self.whole is not None:
            out["final_choice"] = {"images": len(self.whole.eval_set), "subnets_scored": self.whole.evaluations}
        return out


def supernet_score(bundle: str | Path, genome: Genome, data: str, cfg: SupernetScoreConfig = SupernetScoreConfig(),
                   *, progress: bool = False, expected: int = 0) -> SupernetScore:
    """The scorer of `bundle`'s supernet on the `train` split of `data` (anything `--verify` takes)."""
    from ofakit.bundle import load_bundle
    from ofakit.train.data import load_dataset

    supernet, _ = load_bundle(bundle)
    return SupernetScore(supernet, genome, load_dataset(data, "train"), cfg, progress=progress, expected=expected)
