"""Structural latency model of one (device, space): latency from the architecture's structure alone, with no table,
fitted on subnets measured end to end. This is how ofakit serves devices it cannot reach and has no per-layer table
for, such as the GPUs of HELP's measurements.

A GPU at batch 1 spends most of a small network's time launching kernels, so its latency follows depth and the
number of operations more than MACs; at batch 64 it follows MACs (Lee et al., "HELP: Hardware-Adaptive Efficient
Latency Prediction for NAS via Meta-Learning", NeurIPS 2021, measured both). The model therefore sees, for each stage,
sums over its running blocks of per-block counts (`BLOCK_FEATURES`: MACs of the expand, depthwise (per kernel size)
and project convolutions, activation elements, kernel size, expand ratio, operations launched), plus the resolution,
the depths and whole-network totals (`GLOBAL_FEATURES`). The counts of every (slot, kernel, expand) come from the
space's layer shapes, once per resolution, so a batch of archs or genome rows is one gather and one sum.

The model is gradient-boosted trees on log(ms). End-to-end timings often have a heavy right tail (runs disturbed by
something else), and then the median or a lower quantile lands within a relative tolerance of the measurement more
often than the mean does; so the loss (squared error, absolute error, 40th percentile) is chosen per device on a
part of the records the trees are not fitted on. The trees (depth <= 5) are stored as arrays in JSON
(`ofakit.predict.trees`), `latency_tables/<device>.structural.json`, with where the measurements came from and the
error on held-out subnets, and walked as complete binary trees, every inner-node test of a chunk of rows at once
(10,000 archs in ~1.5 s on this 2-core VM); prediction needs NumPy only, fitting imports scikit-learn.

`python -m ofakit.predict.structural --help-data DIR` rebuilds the shipped GPU models from HELP's measurements.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ofakit import __version__
from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_json_file, read_model_file
from ofakit.latency.table import table_dirs
from ofakit.metrics import error_metrics
from ofakit.predict.latency import arch_digest
from ofakit.predict.saving import SavedAsJson
from ofakit.space import LayerShape, SearchSpace, get_space
from ofakit.space.genome import Genome
from ofakit.space.mbconv import MBConvSpace, se_channels

FORMAT = "ofakit-structural-latency"
VERSION = 1
SUFFIX = ".structural.json"
BLOCK_FEATURES = ("expand_macs", "dw_macs", "project_macs", "se_macs", "dw3_macs", "dw5_macs", "dw7_macs",
                  "in_elements", "mid_elements", "out_elements", "kernel", "expand", "ops")
GLOBAL_FEATURES = ("resolution", "blocks", "macs", "params", "ops", "fixed_macs")
TREES = dict(max_iter=500, learning_rate=0.05, max_leaf_nodes=15, max_depth=5, min_samples_leaf=20,
             l2_regularization=1.0, early_stopping=False)  # scikit-learn HistGradientBoostingRegressor
LOSSES = ("squared_error", "absolute_error", "quantile-q0.4")  # on log(ms): the mean, the median, the 40th percentile
HELD_OUT = 1000  # subnets of a measured set kept out of the fit to measure the model's error
SPLIT_SEED = 0


# -- features ---------------------------------------------------------------------------------------------------
def layer_ops(layer: LayerShape) -> int:
    """Operations (kernel launches in an eager runtime) of one layer: conv, batch norm and activation per conv;
    squeeze-excite adds pool, two convs, two activations and a multiply; a residual adds one add."""
    if layer.op == "mbconv":
        expand = 3 if layer.mid != layer.input[2] else 0
        return expand + 3 + 2 + (6 if layer.se else 0) + (1 if layer.skip else 0)
    return {"stem": 3, "final_expand": 3, "pool": 1, "feature_mix": 2, "classifier": 1}.get(layer.op, 1)


def block_counts(layer: LayerShape) -> np.ndarray:
    """The per-block counts of one MBConv layer in the order of BLOCK_FEATURES (MACs and elements in millions)."""
    (hi, wi, ci), (ho, wo, co) = layer.input, layer.output
    mid, k = layer.mid, layer.kernel
    dw = ho * wo * mid * k * k / 1e6
    return np.array([hi * wi * ci * mid / 1e6 if mid != ci else 0.0, dw, ho * wo * mid * co / 1e6,
                     2 * mid * se_channels(mid) / 1e6 if layer.se else 0.0,
                     dw if k == 3 else 0.0, dw if k == 5 else 0.0, dw if k == 7 else 0.0,
                     hi * wi * mid / 1e6, ho * wo * mid / 1e6, ho * wo * co / 1e6, float(k), mid / ci,
                     float(layer_ops(layer))])


class StructuralFeatures:
    """The features of subnets of an MBConv space (`names`), for a batch of archs or genome rows at once.

    Any input resolution is accepted (the counts are built from the layer shapes at that resolution); whether a
    model answers there is the model's business.
    """

    def __init__(self, space: SearchSpace) -> None:
        if not isinstance(space, MBConvSpace):
            raise ConfigError(f"a structural latency model describes MBConv spaces; space {space.name!r} is a "
                              f"{space.family} space")
        self.space = space
        stages = len(space.stage_slots)
        self.names = [*GLOBAL_FEATURES, *(f"depth{i}" for i in range(stages)),
                      *(f"stage{i}/{f}" for i in range(stages) for f in BLOCK_FEATURES)]
        self._stage_of = np.repeat(np.arange(stages), [len(s) for s in space.stage_slots])
        self._position = np.concatenate([np.arange(len(s)) for s in space.stage_slots])
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _table(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """(per-slot counts [slot, kernel, expand, block feature + macs, params], fixed macs/params/ops)."""
        if resolution not in self._tables:
            sp, s = self.space, self.space.spec
            width = len(BLOCK_FEATURES) + 2
            blocks = np.zeros((sp.num_slots, len(s.kernel_choices), len(s.expand_choices), width))
            fixed = np.zeros(3)
            for ki, k in enumerate(s.kernel_choices):
                for ei, e in enumerate(s.expand_choices):
                    layers = sp.layers(sp.full_depth(kernel=k, expand=e, resolution=resolution))
                    slots, rest = layers[2:2 + sp.num_slots], layers[:2] + layers[2 + sp.num_slots:]
                    for j, layer in enumerate(slots):
                        macs, params = sp.layer_costs(layer)
                        blocks[j, ki, ei] = [*block_counts(layer), macs / 1e6, params / 1e6]
                    fixed = np.array([sum(sp.layer_costs(x)[0] for x in rest) / 1e6,
                                      sum(sp.layer_costs(x)[1] for x in rest) / 1e6,
                                      sum(layer_ops(x) for x in rest)], dtype=np.float64)
            self._tables[resolution] = (blocks, fixed)
        return self._tables[resolution]

    def of_indices(self, resolution: np.ndarray, depths: np.ndarray, kernel_index: np.ndarray,
                   expand_index: np.ndarray) -> np.ndarray:
        """Features [n, len(names)] from resolutions [n], depths [n, stages] and choice indices [n, slots]."""
        n, stages = len(resolution), depths.shape[1]
        active = self._position[None, :] < depths[:, self._stage_of]
        slots = np.arange(self.space.num_slots)[None, :]
        per = np.zeros((n, self.space.num_slots, len(BLOCK_FEATURES) + 2))
        fixed = np.zeros((n, 3))
        for r in np.unique(resolution):
            rows = np.flatnonzero(resolution == r)
            blocks, fixed[rows] = self._table(int(r))
            per[rows] = blocks[slots, kernel_index[rows], expand_index[rows]]
        per *= active[..., None]
        stage = np.zeros((n, stages, per.shape[2]))
        np.add.at(stage, (slice(None), self._stage_of), per)
        at = {f: i for i, f in enumerate(BLOCK_FEATURES)}
        macs, params = per[..., -2].sum(axis=1), per[..., -1].sum(axis=1)
        totals = np.column_stack([resolution, active.sum(axis=1), macs + fixed[:, 0], params + fixed[:, 1],
                                  per[..., at["ops"]].sum(axis=1) + fixed[:, 2], fixed[:, 0]])
        return np.column_stack([totals, depths, stage[..., :len(BLOCK_FEATURES)].reshape(n, -1)]).astype(np.float64)

    def of_archs(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Features of archs of this space (values of skipped slots are ignored; an arch of another space raises
        ArchError)."""
        s = self.space.spec
        k_index = {k: i for i, k in enumerate(s.kernel_choices)}
        e_index = {e: i for i, e in enumerate(s.expand_choices)}
        n = len(archs)
        res = np.empty(n, dtype=np.int64)
        depths = np.empty((n, len(self.space.stage_slots)), dtype=np.int64)
        ks = np.zeros((n, self.space.num_slots), dtype=np.int64)
        es = np.zeros((n, self.space.num_slots), dtype=np.int64)
        for i, a in enumerate(archs):
            if a.space != self.space.name:
                self.space.validate(a)  # raises ArchError naming both spaces
            res[i], depths[i] = a.resolution, a.depths
            used = set(self.space.active_slots(a))
            for slot in used:
                if a.kernel_sizes[slot] not in k_index or a.expand_ratios[slot] not in e_index:
                    self.space.validate(a)  # names the illegal value and where
            ks[i] = [k_index.get(k, 0) for k in a.kernel_sizes]
            es[i] = [e_index.get(e, 0) for e in a.expand_ratios]
        return self.of_indices(res, depths, ks, es)

    def of_rows(self, genome: Genome, rows: np.ndarray) -> np.ndarray:
        """Features of genome rows of this space, without building archs."""
        return self.of_indices(genome.values(rows, "resolution")[:, 0].astype(np.int64),
                               genome.values(rows, "depths").astype(np.int64),
                               rows[:, genome.columns["kernel_sizes"]], rows[:, genome.columns["expand_ratios"]])


# -- trees as complete binary trees -------------------------------------------------------------------------------
def complete_trees(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The trees of `ofakit.predict.trees` arrays laid out as complete binary trees of the largest depth D: per tree
    the features and thresholds of its 2^D - 1 inner nodes (a leaf above depth D becomes nodes that always go left,
    threshold +inf) and its 2^D leaf values, plus the constant. `predict_complete` walks them in D steps per tree."""
    feature, threshold = arrays["tree_feature"].astype(np.int64), arrays["tree_threshold"]
    left, right = arrays["tree_left"].astype(np.int64), arrays["tree_right"].astype(np.int64)
    value = arrays["tree_value"]

    def depth(t: int, node: int) -> int:
        return 0 if feature[t, node] < 0 else 1 + max(depth(t, left[t, node]), depth(t, right[t, node]))

    n_trees = feature.shape[0]
    d = max((depth(t, 0) for t in range(n_trees)), default=0)
    feat = np.zeros((n_trees, 2 ** d - 1), dtype=np.int64)
    thr = np.full((n_trees, 2 ** d - 1), np.inf)
    leaf = np.zeros((n_trees, 2 ** d))
    for t in range(n_trees):
        stack = [(0, 0, 0)]  # (node, position in the complete tree, depth)
        while stack:
            node, pos, level = stack.pop()
            if feature[t, node] < 0:  # every leaf position under `pos` gets the value
                span = 2 ** (d - level)
                first = (pos + 1) * 2 ** (d - level) - 1 - (2 ** d - 1)
                leaf[t, first:first + span] = value[t, node]
                continue
            feat[t, pos], thr[t, pos] = feature[t, node], threshold[t, node]
            stack += [(left[t, node], 2 * pos + 1, level + 1), (right[t, node], 2 * pos + 2, level + 1)]
    return feat, thr, leaf, float(arrays["init"][0])


def predict_complete(trees: tuple[np.ndarray, np.ndarray, np.ndarray, float], x: np.ndarray, *,
                     chunk: int = 256) -> np.ndarray:
    """The trees' sum for each row of `x`, compared in float32 as `gbm_predict` does (the same result, many times
    faster): per chunk of rows, every inner node's test at once, then D steps over all trees."""
    feat, thr, leaf, init = trees
    x = np.asarray(x, dtype=np.float32)
    n_trees, inner = feat.shape
    depth = int(np.log2(leaf.shape[1]))
    node_base = (np.arange(n_trees) * inner)[None, :]
    leaf_base = (np.arange(n_trees) * leaf.shape[1] - inner)[None, :]
    feat_flat, thr_flat, leaf_flat = feat.ravel(), thr.ravel(), leaf.ravel()
    out = np.empty(len(x))
    for lo in range(0, len(x), chunk):
        part = x[lo:lo + chunk]
        goes_right = part[:, feat_flat] > thr_flat  # [rows, trees x inner nodes]
        rows = np.arange(len(part))[:, None]
        pos = np.zeros((len(part), n_trees), dtype=np.int64)
        for _ in range(depth):
            pos = 2 * pos + 1 + goes_right[rows, node_base + pos]
        out[lo:lo + chunk] = init + leaf_flat[leaf_base + pos].sum(axis=1)
    return out


# -- the estimator ----------------------------------------------------------------------------------------------
class StructuralEstimator(SavedAsJson):
    """A structural model as an Estimator (`ofakit.latency.estimate`): no table behind it.

    Args:
        arrays: the trees (`ofakit.predict.trees.gbm_to_arrays`) of log(ms) over `StructuralFeatures`.
        meta: device, space, resolution range, features, records, held-out error, source and attribution, digests of
            the fitted subnets.
        path: the file it was read from or written to.
    """

    FILE_WHAT = "structural latency model"
    COMPACT = True

    name = "structural"
    table = None

    def __init__(self, arrays: Mapping[str, Any], meta: Mapping[str, Any], *, path: Path | None = None) -> None:
        self.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        if "tree_threshold" in self.arrays:  # float32 values (see to_dict), compared with float32 features
            self.arrays["tree_threshold"] = self.arrays["tree_threshold"].astype(np.float32).astype(np.float64)
        self.meta = dict(meta)
        self.path = path
        self._trees = complete_trees(self.arrays)
        self.space = get_space(str(self.meta["space"]))
        self.features = StructuralFeatures(self.space)
        if list(self.meta.get("features", self.features.names)) != self.features.names:
            raise ConfigError(f"{path or 'structural model'}: fitted on other features than this ofakit computes; "
                              "refit it")
        self.resolution_range = tuple(int(r) for r in self.meta["resolution_range"])
        self._fitted = frozenset(self.meta.get("fitted_archs", ()))

    def _check(self, resolutions: Sequence[int] | np.ndarray) -> None:
        lo, hi = self.resolution_range
        bad = sorted({int(r) for r in resolutions if not lo <= r <= hi})
        if bad:
            raise LatencyLookupError(
                f"the structural latency model of device {self.meta['device']!r} answers for input resolutions "
                f"{lo}-{hi} (what was measured); {bad[0]} is outside: measure subnets at that resolution on the device "
                f"and run: ofakit latency adapt --device {self.meta['device']} --space {self.space.name} "
                "--records MEASURED.jsonl")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Estimated ms for each row of features `x` (`StructuralFeatures.names`)."""
        return np.exp(predict_complete(self._trees, x)) if len(x) else np.zeros(0)

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float:
        """Estimated latency of `arch` in ms."""
        return float(self.estimate_batch([arch], scale=scale)[0])

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms, float64, one per arch."""
        self._check([a.resolution for a in archs])
        return scale * self.predict(self.features.of_archs(archs))

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms of genome rows (what a search holds), float64."""
        self._check(genome.genes[int(genome.columns["resolution"][0])].choices)
        return scale * self.predict(self.features.of_rows(genome, rows))

    def additive(self, scale: float = 1.0) -> None:
        """None: trees over whole-network features are not a sum over layers."""
        return None

    def fitted_on(self, arch: ArchConfig) -> bool:
        """Whether `arch` was one of the subnets the model was fitted on."""
        return arch_digest(arch) in self._fitted

    def serves(self, resolutions: Sequence[int]) -> tuple[int, ...]:
        """Those of `resolutions` inside the range it answers for."""
        lo, hi = self.resolution_range
        return tuple(r for r in resolutions if lo <= r <= hi)

    # -- JSON ---------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; thresholds as float32 (what they are: `fit_trees` fits on float32 features), node indices as
        integers, leaf values to 7 significant digits, so the file stays small."""
        def compact(key: str, v: np.ndarray) -> list[Any]:
            if key == "tree_threshold":
                return [[float(str(x)) for x in row] for row in v.astype(np.float32)]
            if key in ("tree_feature", "tree_left", "tree_right"):
                return v.astype(np.int64).tolist()
            return [float(f"{x:.7g}") for x in v.ravel()] if v.ndim == 1 else [[float(f"{x:.7g}") for x in row]
                                                                                for row in v]
        return {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "model": {"kind": "gbm-log", "arrays": {k: compact(k, v) for k, v in self.arrays.items()}}}

    @classmethod
    def load(cls, path: str | Path) -> StructuralEstimator:
        """Read a model file; anything malformed is one ConfigError line naming the file."""
        path = Path(path)
        data = read_model_file(path, "structural latency model", FORMAT, VERSION)
        meta, model = data.get("meta"), data.get("model")
        if not isinstance(meta, Mapping) or not isinstance(model, Mapping) or not isinstance(model.get("arrays"),
                                                                                              Mapping):
            raise ConfigError(f"{path}: 'meta' and 'model' (with 'arrays') must be objects")
        missing = [k for k in ("device", "space", "resolution_range") if k not in meta]
        if missing:
            raise ConfigError(f"{path}: meta lacks {', '.join(map(repr, missing))}")
        try:
            return cls(model["arrays"], meta, path=path)
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path}: malformed model arrays ({exc})") from None


def model_file(device: str, suffix: str = SUFFIX) -> Path | None:
    """`<device><suffix>` in the table folders (`ofakit.latency.table.table_dirs`), first match; None if none."""
    for folder in table_dirs():
        path = Path(folder) / f"{device}{suffix}"
        if path.is_file():
            return path
    return None


def load_structural(device: str, space: str) -> StructuralEstimator:
    """The structural model of `device` (name or alias) for `space`.

    Raises LatencyLookupError when the device has none, or one of another space (naming what to measure).
    """
    from ofakit.latency.devices import get_device

    name = get_device(device).name
    path = model_file(name)
    if path is None:
        raise LatencyLookupError(f"device {name!r} has no structural latency model ({name}{SUFFIX} in "
                                 f"{', '.join(map(str, table_dirs())) or 'no table folder'}); measure subnets on it "
                                 f"and run: ofakit latency adapt --device {name} --space {space} --records "
                                 "MEASURED.jsonl")
    model = StructuralEstimator.load(path)
    if model.space.name != space:
        raise LatencyLookupError(f"the structural latency model of device {name!r} serves space "
                                 f"{model.space.name!r}, not {space!r}: nothing of {space!r} was measured on it; "
                                 f"measure subnets of it and run: ofakit latency adapt --device {name} --space "
                                 f"{space} --records MEASURED.jsonl")
    return model


# -- fitting ----------------------------------------------------------------------------------------------------
def held_out_split(n: int, held_out: int = HELD_OUT, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(fit, test) indices: a seeded permutation of range(n), its last `held_out` for the test."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n - held_out]), np.sort(order[n - held_out:])


def hgb_to_arrays(model: Any) -> dict[str, np.ndarray]:
    """A fitted scikit-learn HistGradientBoostingRegressor as the arrays of `ofakit.predict.trees.gbm_predict` (its
    leaf values already hold the learning rate, so the stored rate is 1)."""
    trees = [p[0].nodes for p in model._predictors]
    size = max(len(t) for t in trees)
    out = {k: np.full((len(trees), size), fill, dtype=np.float64) for k, fill in
           (("tree_feature", -2), ("tree_threshold", 0.0), ("tree_left", -1), ("tree_right", -1),
            ("tree_value", 0.0))}
    for i, t in enumerate(trees):
        n = len(t)
        out["tree_feature"][i, :n] = np.where(t["is_leaf"], -2, t["feature_idx"])
        out["tree_threshold"][i, :n] = np.where(t["is_leaf"], 0.0, t["num_threshold"])
        out["tree_left"][i, :n] = np.where(t["is_leaf"], -1, t["left"])
        out["tree_right"][i, :n] = np.where(t["is_leaf"], -1, t["right"])
        out["tree_value"][i, :n] = np.where(t["is_leaf"], t["value"], 0.0)
    return {**out, "learning_rate": np.array([1.0]),
            "init": np.array([float(np.ravel(model._baseline_prediction)[0])])}


def _trees(loss: str, x: np.ndarray, t: np.ndarray, seed: int, iterations: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    kind, _, q = loss.partition("-q")
    extra = {"quantile": float(q)} if q else {}
    return HistGradientBoostingRegressor(loss=kind, **extra, **{**TREES, "max_iter": iterations},
                                         random_state=seed).fit(x, t)


def fit_trees(x: np.ndarray, ms: np.ndarray, *, seed: int = 0,
              iterations: int = TREES["max_iter"]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Trees of log(ms) on features `x`, and how their loss was chosen.

    Each loss of LOSSES is fitted on a seeded 80 % of the records and scored (share within +-10 %) on the other
    20 %; the best is refitted on all of them (see the module docstring for why).
    """
    x, t = np.asarray(x, dtype=np.float32), np.log(ms)  # gbm_predict compares in float32: fit on those values
    order = np.random.default_rng(seed).permutation(len(t))
    inner, check = order[: len(t) * 4 // 5], order[len(t) * 4 // 5:]
    scores = {loss: error_metrics(np.exp(_trees(loss, x[inner], t[inner], seed, iterations).predict(x[check])),
                                  ms[check]) for loss in LOSSES}
    best = max(LOSSES, key=lambda k: (scores[k]["within_10pct"], scores[k]["spearman"]))
    choice = {"loss": best, "inner_check": {k: {"within_10pct": round(v["within_10pct"], 4),
                                                "spearman": round(v["spearman"], 4)} for k, v in scores.items()}}
    return hgb_to_arrays(_trees(best, x, t, seed, iterations)), choice


def fit_structural(space: SearchSpace, archs: Sequence[ArchConfig], measured_ms: Sequence[float], *, device: str,
                   held_out: int = HELD_OUT, seed: int = SPLIT_SEED, iterations: int = TREES["max_iter"],
                   meta: Mapping[str, Any] | None = None) -> StructuralEstimator:
    """Fit a structural model on measured subnets, keeping `held_out` of them out of the fit to measure its error.

    The split is a seeded permutation (`held_out_split`); the returned model is the one fitted on the others (boosted
    for `iterations` rounds), and its meta holds its error on the held-out subnets (within +-10 %, MAPE, Spearman,
    median bias).
    """
    ms = np.asarray(measured_ms, dtype=np.float64)
    if len(archs) != len(ms) or len(ms) < held_out + 20:
        raise ConfigError(f"need one measured latency per arch and at least {held_out + 20} subnets, got "
                          f"{len(archs)} archs and {len(ms)} latencies")
    if not np.all(np.isfinite(ms) & (ms > 0)):
        raise ConfigError("measured latencies must be positive numbers")
    features = StructuralFeatures(space)
    x = features.of_archs(archs)
    fit, test = held_out_split(len(ms), held_out, seed)
    arrays, choice = fit_trees(x[fit], ms[fit], seed=seed, iterations=iterations)
    resolutions = [a.resolution for a in archs]
    info = {"device": device, "space": space.name, "kind": "gbm-log", **choice, "features": features.names,
            "resolution_range": [min(resolutions), max(resolutions)], "records": int(len(fit)),
            "split": f"numpy default_rng({seed}).permutation({len(ms)}): the last {held_out} held out",
            "date": datetime.date.today().isoformat(), "ofakit_version": __version__, **(meta or {}),
            "fitted_archs": sorted(arch_digest(archs[i]) for i in fit)}
    model = StructuralEstimator(arrays, info)
    if held_out:
        pred = model.predict(x[test])
        model.meta["held_out"] = {"subnets": int(len(test)),
                                  **{k: round(v, 4) for k, v in error_metrics(pred, ms[test]).items()}}
    return model


def describe(model: StructuralEstimator) -> dict[str, Any]:
    """What a report says about a structural model: where its numbers come from and its held-out error."""
    m = model.meta
    return {"kind": "structural model", "device": m["device"], "file": model.path.name if model.path else None,
            "spaces": [m["space"]], "records": m.get("records"), "held_out": m.get("held_out"),
            "resolution_range": m["resolution_range"], "source": m.get("source"),
            "attribution": m.get("attribution")}


# -- HELP's GPU measurements ------------------------------------------------------------------------------------
HELP_GPUS = {"2080ti": "rtx2080ti", "titan_xp": "titan-xp", "v100": "v100"}  # HELP's names -> ofakit device stems
HELP_BATCHES = (1, 32, 64)
HELP_SPACE = "ofa-mbv3-w1.2"
HELP_SOURCE = ("HELP (Lee et al., NeurIPS 2021), https://github.com/HayeonLee/HELP commit 45f70eb, data/ofa/: 5,000 "
               "OFA MobileNetV3 subnets (ofa_archs.pt) timed end to end in PyTorch (latency/<gpu>_<batch>.pt)")
HELP_ATTRIBUTION = "Copyright (c) 2024 HayeonLee; MIT License (the full notice: latency_tables/LICENSE-HELP)"
HELP_WIDTH_NOTE = ("HELP does not state the width multiplier of the measured networks; taken as 1.2, the supernet "
                   "HELP's ImageNet validation code loads for its OFA subnets; at width 1.0 every layer has ~1.4x "
                   "fewer MACs, so the model serves ofa-mbv3-w1.2 only")


def help_device(gpu: str, batch: int) -> str:
    """The ofakit device name of one of HELP's (GPU, batch) settings, e.g. v100-b64."""
    return f"{HELP_GPUS[gpu]}-b{batch}"


def read_help_gpus(folder: str | Path) -> tuple[list[ArchConfig], dict[tuple[str, int], np.ndarray]]:
    """HELP's subnets (as archs of `HELP_SPACE`) and their latencies per (gpu, batch), from the converted files
    (`archs.json`, `<gpu>_b<batch>.json`)."""
    folder = Path(folder)
    data = read_json_file(folder / "archs.json", "HELP subnets")
    try:
        archs = [ArchConfig(HELP_SPACE, a["resolution"], tuple(a["depths"]), tuple(a["kernel_sizes"]),
                            tuple(a["expand_ratios"])) for a in data["archs"]]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{folder / 'archs.json'}: malformed HELP subnets ({exc})") from None
    latencies = {}
    for gpu in HELP_GPUS:
        for batch in HELP_BATCHES:
            path = folder / f"{gpu}_b{batch}.json"
            ms = np.asarray(read_json_file(path, "HELP latencies").get("latency_ms", []), dtype=np.float64)
            if len(ms) != len(archs):
                raise ConfigError(f"{path}: {len(ms)} latencies for {len(archs)} subnets")
            latencies[gpu, batch] = ms
    return archs, latencies


def noise_evidence(latencies: Mapping[tuple[str, int], np.ndarray], gpu: str, batch: int) -> dict[str, Any]:
    """What bounds a structural model's accuracy on one of HELP's settings, from the measurements alone.

    - `sibling_ratio`: for each other GPU at the same batch, the 5th-95th percentile of (this GPU's ms / its ms)
      for the same subnet, and the share of subnets within +-10 % of the median ratio (a model that knew the other
      GPU's measurement exactly and scaled it);
    - `batch_ratio`: the same against this GPU at the other batch sizes.
    """
    y = latencies[gpu, batch]

    def ratio(other: np.ndarray) -> dict[str, float]:
        r = y / other
        p5, p50, p95 = np.percentile(r, [5, 50, 95])
        return {"p5": round(float(p5), 3), "p95": round(float(p95), 3),
                "within_10pct_of_median": round(float(np.mean(np.abs(r / p50 - 1) <= 0.10)), 4)}

    return {"sibling_ratio": {g: ratio(latencies[g, batch]) for g in HELP_GPUS if g != gpu},
            "batch_ratio": {f"b{b}": ratio(latencies[gpu, b]) for b in HELP_BATCHES if b != batch}}


def build_help_models(folder: str | Path, out: str | Path) -> list[Path]:
    """Fit and write the nine shipped GPU models (`<device>.structural.json` in `out`) from HELP's measurements."""
    archs, latencies = read_help_gpus(folder)
    space = get_space(HELP_SPACE)
    digest = hashlib.sha256(b"".join(np.asarray(v).tobytes() for v in latencies.values())).hexdigest()
    written = []
    for (gpu, batch), ms in latencies.items():
        device = help_device(gpu, batch)
        print(f"fitting {device} ...", file=sys.stderr, flush=True)
        model = fit_structural(space, archs, ms, device=device, meta={
            "batch": batch, "source": HELP_SOURCE, "attribution": HELP_ATTRIBUTION, "license": "MIT",
            "width_note": HELP_WIDTH_NOTE, "data_sha256": digest,
            "noise": noise_evidence(latencies, gpu, batch)})
        written.append(model.save(Path(out) / f"{device}{SUFFIX}"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ofakit.predict.structural", description=build_help_models.__doc__)
    parser.add_argument("--help-data", required=True, help="folder of HELP's converted GPU measurements")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "latency_tables"))
    args = parser.parse_args(argv)
    for path in build_help_models(args.help_data, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
