"""Learned latency predictor of one (device, space): the LUT sum corrected by a model fitted on subnets measured end
to end, so that it learns what does not add up (operator fusion, caches, the runtime's per-call work).

A sum of per-layer timings misses what happens between layers (Cai et al., "Once-for-All", ICLR 2020, section 3.4,
and Dudziak et al., "BRP-NAS", NeurIPS 2020, on learned latency predictors). The predictor keeps the table as its
strongest feature and learns either the ratio of measured to summed latency or the latency itself:

    estimate(arch) = scale * lut_ms(arch) * exp(f(features(arch)))        (kinds scale, ridge, gbm)
    estimate(arch) = scale * (w . features(arch) + b)                     (kind linear)

Features are cheap and vectorized over a batch (`ArchFeatures`): the LUT sum, MACs, params, resolution, running
blocks in all and per stage, mean kernel size and expand ratio. The target is the measured latency brought to the
table's reference level (measured ms x table reference / reference measured with the subnet), so `scale` follows the
machine's drift exactly as it does for the LUT. The model is the one cross-validation picks: `scale` (a constant
ratio), `ridge` (log ratio linear in standardized features), `gbm` (scikit-learn gradient-boosted trees on the log
ratio, with enough records) or `linear` (milliseconds affine in the features, ridge-regularized, fitted on the
relative error: on a CPU runtime the end-to-end time is close to affine in the work, with a per-call and per-layer
cost that a ratio cannot express). Stored as JSON next to the table
(`latency_tables/<device>_<space>.predictor.json`): meta, and the model's arrays as lists; never pickles. Prediction
needs NumPy only; scikit-learn is imported to fit trees.
"""
from __future__ import annotations

import datetime
import hashlib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ofakit import __version__
from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_model_file
from ofakit.errors import CapabilityError
from ofakit.latency.devices import get_device
from ofakit.latency.estimate import LutEstimator
from ofakit.latency.measure import LatencyRecord
from ofakit.latency.table import PREDICTOR_SUFFIX, LatencyTable, find_table, table_dirs
from ofakit.metrics import error_metrics
from ofakit.predict.saving import SavedAsJson
from ofakit.predict.trees import check_gbm_arrays, gbm_predict, gbm_to_arrays
from ofakit.space import SearchSpace
from ofakit.space.genome import Genome

FORMAT = "ofakit-latency-predictor"
VERSION = 1
RATIO_KINDS = ("scale", "ridge", "gbm")  # model log(measured / LUT sum)
KINDS = (*RATIO_KINDS, "linear")  # linear: measured ms directly
MIN_RECORDS = 8  # fewer cannot be cross-validated
MIN_RECORDS_GBM = 30  # trees only compete from this many records on
RIDGE_ALPHA = 1.0
LINEAR_ALPHA = 0.1  # small: the features are few and the target is nearly affine in them
GBM = dict(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8)


def predictor_filename(device: str, space: str) -> str:
    return f"{device}_{space}{PREDICTOR_SUFFIX}"


def how_to_fit(device: str, space: str) -> str:
    return f"ofakit latency fit --device {device} --space {space} --samples 40"


def arch_digest(arch: ArchConfig) -> str:
    """A short stable name of the network an arch defines (skipped slots left out), to remember fitted subnets."""
    from ofakit.space import get_space

    return hashlib.sha1(repr(get_space(arch.space).key(arch)).encode()).hexdigest()[:12]


def table_fingerprint(table: LatencyTable) -> dict[str, Any]:
    """What identifies the table a predictor was fitted against (its content hash decides)."""
    return {"file": table.path.name if table.path else None, "date": table.meta.get("date"),
            "reference_ms": table.reference_ms, "sha256": hashlib.sha256(table.to_json().encode()).hexdigest()}


# -- features ---------------------------------------------------------------------------------------------------
class ArchFeatures:
    """Per-arch features of a space with a block sum (MBConv spaces), computed for a whole batch at once.

    MACs and params are block sums of the space's per-layer costs (one gather per batch), as in the search limits.
    """

    def __init__(self, lut: LutEstimator) -> None:
        self.lut = lut
        self.space = sp = lut.space
        self._macs = sp.block_sum(lambda _, layer: float(sp.layer_costs(layer)[0]))
        self._params = sp.block_sum(lambda _, layer: float(sp.layer_costs(layer)[1]))
        if self._macs is None:
            raise CapabilityError(f"space {sp.name!r} ({sp.family} family) has no block sum, which the learned "
                                  "latency predictor needs (MBConv spaces have one)")
        self.genome = Genome(sp)
        self.names = ["lut_ms", "macs_m", "params_m", "resolution", "blocks",
                      *[f"depth{i}" for i in range(len(self.genome.columns["depths"]))], "kernel_mean", "expand_mean"]

    def __call__(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """[arch, feature] float64, columns as in `names`; the first is the LUT sum (ms)."""
        return self.of_rows(self.genome, self.genome.encode(archs))

    def of_rows(self, genome: Genome, rows: np.ndarray) -> np.ndarray:
        """The features of genome rows (what a search holds), without building archs."""
        lut = self.lut.estimate_rows(genome, rows)
        used = genome.active(rows)[:, genome.columns["kernel_sizes"]]  # per slot; a slot's expand gene is gated alike
        blocks = used.sum(axis=1).astype(np.float64)
        kernel_mean, expand_mean = (np.where(used, genome.values(rows, field), 0.0).sum(axis=1) / np.maximum(blocks, 1)
                                    for field in ("kernel_sizes", "expand_ratios"))
        return np.column_stack([lut, self._macs.of_rows(genome, rows) / 1e6, self._params.of_rows(genome, rows) / 1e6,
                                genome.values(rows, "resolution")[:, 0], blocks, genome.values(rows, "depths"),
                                kernel_mean, expand_mean])


# -- models -----------------------------------------------------------------------------------------------------
def _predict(kind: str, arrays: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Estimated ms (at the table's reference level) for each row of features `x` (column 0: the LUT sum)."""
    if kind == "gbm":
        return x[:, 0] * np.exp(gbm_predict(dict(arrays), x))
    out = ((x - arrays["mean"]) / arrays["std"]) @ arrays["coef"] + arrays["intercept"][0]
    if kind == "linear":  # an affine model can go below zero far outside its records: never below half the LUT sum
        return np.maximum(out, 0.5 * x[:, 0])
    return x[:, 0] * np.exp(out)


def _ridge(x: np.ndarray, t: np.ndarray, alpha: float, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Ridge regression of `t` on standardized `x`, each row weighted by `weights` (alpha 0: the weighted mean)."""
    w = np.ones(len(t)) if weights is None else weights / weights.mean()
    mean, std = np.average(x, axis=0, weights=w), x.std(axis=0)
    std[std == 0] = 1.0
    level = np.average(t, weights=w)
    coef = np.zeros(x.shape[1])
    if alpha:
        z = (x - mean) / std  # centred in the weighted sense, so the intercept is the weighted mean of t
        coef = np.linalg.solve(z.T @ (w[:, None] * z) + alpha * np.eye(x.shape[1]), z.T @ (w * (t - level)))
    return {"mean": mean, "std": std, "coef": coef, "intercept": np.array([level])}


def _fit_model(kind: str, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Fit `kind` to measured ms `y` (the ratio kinds to log(y / LUT sum)); arrays for `_predict`."""
    if kind == "linear":  # weighted by 1 / y^2: least squares on the relative error, the error that is judged
        return _ridge(x, y, LINEAR_ALPHA, weights=1.0 / y ** 2)
    t = np.log(y / x[:, 0])
    if kind == "gbm":
        from sklearn.ensemble import GradientBoostingRegressor

        return gbm_to_arrays(GradientBoostingRegressor(**GBM, random_state=seed).fit(x, t))
    return _ridge(x, t, RIDGE_ALPHA if kind == "ridge" else 0.0)


# -- the predictor ----------------------------------------------------------------------------------------------
class LatencyPredictor(SavedAsJson):
    """The LUT sum of `table` times a learned correction; `estimate` and `estimate_batch` as LutEstimator's.

    Args:
        table: the table it was fitted against (its LUT sum is the first feature).
        kind: one of KINDS.
        arrays: the model's arrays.
        meta: device, space, features, records, cross-validation metrics, table fingerprint, fitted subnets, ...
        space: the search space (defaults to the table's).
        path: the file it was read from or written to.
    """

    FILE_WHAT = "latency predictor"

    name = "predictor"

    def __init__(self, table: LatencyTable, kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                 space: SearchSpace | None = None, path: Path | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown latency predictor kind {kind!r}; known: {', '.join(KINDS)}")
        self.table = table
        self.kind = kind
        self.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        self.meta = dict(meta)
        self.path = path
        self.features = ArchFeatures(LutEstimator(table, space))
        self.space = self.features.space
        self._fitted = frozenset(self.meta.get("fitted_archs", ()))

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float:
        """Estimated latency of `arch` in ms."""
        return float(self.estimate_batch([arch], scale=scale)[0])

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms, float64, one per arch."""
        genome = self.features.genome
        return self.estimate_rows(genome, genome.encode(archs), scale=scale)

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms of genome rows (what a search holds), float64."""
        if not len(rows):
            return np.zeros(0)
        x = self.features.of_rows(genome, rows)
        return scale * _predict(self.kind, self.arrays, x)

    def additive(self, scale: float = 1.0) -> None:
        """None: a learned model is not a sum over layers (the gradient search needs one; see LutEstimator)."""
        return None

    def fitted_on(self, arch: ArchConfig) -> bool:
        """Whether `arch` was one of the subnets the predictor was fitted on."""
        return arch_digest(arch) in self._fitted

    def serves(self, resolutions: Sequence[int]) -> tuple[int, ...]:
        """Those of `resolutions` its table has a section for (its first feature is the table's sum)."""
        return self.features.lut.serves(resolutions)

    # -- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "model": {"kind": self.kind, "arrays": {k: v.tolist() for k, v in self.arrays.items()}}}

    @classmethod
    def load(cls, path: str | Path, table: LatencyTable) -> LatencyPredictor:
        """Read a predictor file fitted against `table`; a malformed file is a ConfigError, a predictor of another
        device or space, or fitted against another version of the table, a LatencyLookupError naming the refit."""
        path = Path(path)
        meta, kind, arrays = read_predictor_file(path)
        device, space = table.meta.get("device"), table.meta.get("space")
        if (meta["device"], meta["space"]) != (device, space):
            raise LatencyLookupError(f"{path} is the latency predictor of device {meta['device']!r} and space "
                                     f"{meta['space']!r}, not {device!r} and {space!r}")
        if meta["table"].get("sha256") != table_fingerprint(table)["sha256"]:
            raise LatencyLookupError(f"latency predictor {path} was fitted against another version of table "
                                     f"{table.name!r} ({table.path}); refit it: {how_to_fit(device, space)}")
        try:
            arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: the model's arrays must be (nested) lists of numbers") from None
        if not all(np.isfinite(v).all() for v in arrays.values()):
            raise ConfigError(f"{path}: the model's arrays hold a number that is not finite")
        try:
            predictor = cls(table, kind, arrays, meta, path=path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        n = len(predictor.features.names)
        need = ({"tree_feature": None, "tree_threshold": None, "tree_left": None, "tree_right": None,
                 "tree_value": None, "init": (1,), "learning_rate": (1,)} if kind == "gbm" else
                {"mean": (n,), "std": (n,), "coef": (n,), "intercept": (1,)})
        wrong = [f"{k} {arrays[k].shape if k in arrays else 'missing'}" for k, shape in need.items()
                 if k not in arrays or (shape is not None and arrays[k].shape != shape)]
        if wrong:
            needed = ", ".join(k + (f" {s}" if s else "") for k, s in need.items())
            raise ConfigError(f"{path}: a {kind} model of {n} features needs arrays {needed}; got {', '.join(wrong)}")
        if kind == "gbm":
            check_gbm_arrays(arrays, features=n, where=str(path))
        return predictor


def read_predictor_file(path: str | Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The meta, model kind and model arrays (as JSON lists) of a predictor file, with their keys and types checked;
    a malformed file is a ConfigError naming it. (`LatencyPredictor.load` checks the rest against the table.)"""
    from ofakit.schema import check_keys, coerce

    data = read_model_file(path, "latency predictor", FORMAT, VERSION)
    check_keys(data, ("format", "version", "meta", "model"), str(path), required=("meta", "model"))
    meta = check_keys(data["meta"], None, f"{path}: meta", required=("device", "space", "table"))
    model = check_keys(data["model"], ("kind", "arrays"), f"{path}: model", required=("kind", "arrays"))
    for key, hint in (("device", str), ("space", str), ("table", dict[str, Any]), ("fitted_archs", list[str]),
                      ("kind", str), ("records", int), ("folds", int), ("cv", dict[str, Any])):
        if key in meta:
            coerce(meta[key], hint, f"{path}: meta: {key}")
    kind = coerce(model["kind"], str, f"{path}: model: kind")
    arrays = coerce(model["arrays"], dict[str, Any], f"{path}: model: arrays")
    return dict(meta), kind, arrays


def find_predictor(device: str, space: str, dirs: Iterable[Path] | None = None) -> Path | None:
    """The predictor file of `device` (canonical name) for `space` in the table folders, first match; None if none."""
    for folder in table_dirs() if dirs is None else dirs:
        path = Path(folder) / predictor_filename(device, space)
        if path.is_file():
            return path
    return None


def load_predictor(device: str, space: str, *, fallback: bool = False) -> LatencyPredictor | LutEstimator:
    """The fitted predictor of `device` (name or alias) for `space`.

    Without a predictor (or with one fitted against another version of the table) this is a LatencyLookupError that
    names the fit command, or with `fallback` the LUT sum (with a warning for a stale predictor).
    """
    name = get_device(device).name
    table = find_table(name, space)
    path = find_predictor(name, space)
    if path is None:
        if fallback:
            return LutEstimator(table)
        where = ", ".join(str(d) for d in table_dirs()) or "no table folder found"
        raise LatencyLookupError(f"no latency predictor for device {name!r} and space {space!r} (looked in "
                                 f"{where}); fit one: {how_to_fit(name, space)}")
    try:
        return LatencyPredictor.load(path, table)
    except LatencyLookupError as exc:
        if not fallback:
            raise
        warnings.warn(f"{exc}; using the LUT sum", stacklevel=2)
        return LutEstimator(table)


# -- fitting ----------------------------------------------------------------------------------------------------
def _at_table_level(records: Sequence[LatencyRecord], table: LatencyTable) -> tuple[np.ndarray, bool]:
    """Measured ms brought to the table's reference level when every record has its reference measurement."""
    measured = np.array([r.measured_ms for r in records], dtype=np.float64)
    refs = [r.reference_ms for r in records]
    if not table.reference_ms or any(not ref for ref in refs):
        return measured, False
    return measured * table.reference_ms / np.array(refs, dtype=np.float64), True


def fit_latency_predictor(table: LatencyTable, records: Sequence[LatencyRecord], *, space: SearchSpace | None = None,
                          kinds: Sequence[str] = KINDS, folds: int = 5, seed: int = 0,
                          meta: Mapping[str, Any] | None = None,
                          on_kind: Callable[[str], None] | None = None) -> LatencyPredictor:
    """Fit each kind to the records, pick the one with the lowest cross-validated MAPE, refit it on all records.

    Args:
        table: the device's table for the space (the LUT sum is the first feature).
        records: subnets measured end to end (`ofakit.predict.records`).
        kinds: candidates (gbm only from MIN_RECORDS_GBM records on).
        folds: cross-validation folds.
        seed: seeds the folds and the trees.
        meta: extra metadata to store (e.g. how the subnets were sampled).
        on_kind: called with each candidate's name before it is cross-validated.
    """
    records = list({r.arch: r for r in records}.values())
    if len(records) < MIN_RECORDS:
        raise ConfigError(f"need at least {MIN_RECORDS} measured subnets to fit a latency predictor, got "
                          f"{len(records)}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown latency predictor kind(s) {', '.join(map(repr, unknown))}; known: "
                          f"{', '.join(KINDS)}")
    features = ArchFeatures(LutEstimator(table, space))
    archs = [r.arch for r in records]
    x = features(archs)
    y, normalized = _at_table_level(records, table)
    kinds = [k for k in kinds if k != "gbm" or len(records) >= MIN_RECORDS_GBM]
    order = np.random.default_rng(seed).permutation(len(records))
    folds = min(folds, len(records))
    cv: dict[str, dict[str, float]] = {"lut": error_metrics(x[:, 0], y)}
    for kind in kinds:
        if on_kind:
            on_kind(kind)
        out_of_fold = np.empty(len(records))
        for f in range(folds):
            test = order[f::folds]
            train = np.setdiff1d(order, test)
            out_of_fold[test] = _predict(kind, _fit_model(kind, x[train], y[train], seed), x[test])
        cv[kind] = error_metrics(out_of_fold, y)
    best = min(kinds, key=lambda k: cv[k]["mape_pct"])
    device, space_name = table.meta["device"], table.meta["space"]
    info = {
        "device": device, "space": space_name, "kind": best, "features": features.names,
        "target": ("measured ms" if best == "linear" else "log(measured ms / LUT sum ms)")
        + (" at the table's reference level" if normalized else ""),
        "drift_normalized": normalized, "records": len(records), "folds": folds, "seed": seed,
        "cv": cv, "date": datetime.date.today().isoformat(), "ofakit_version": __version__,
        "table": table_fingerprint(table), **(meta or {}),
        "fitted_archs": sorted(arch_digest(a) for a in archs),
    }
    return LatencyPredictor(table, best, _fit_model(best, x, y, seed), info, space=features.lut.space)
