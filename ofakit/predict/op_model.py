"""Op-aware per-layer latency model of one device, fitted on its latency table, that answers for any layer made of the
same operations: other widths (`ofa-mbv3-w1.0` from the `ofa-mbv3-w1.2` table) and other input resolutions.

A table answers only for the layer shapes it holds. What a layer costs on a phone is close to linear in the work of
its operations (Cai et al., "Once-for-All", ICLR 2020, section 3.4, for the tables; Zhang et al., "nn-Meter",
MobiSys 2021, for per-kernel models), so each layer is described by a few counts (`FEATURES`): a per-layer cost,
MACs split by op type (stem conv, pointwise convs, depthwise convs per kernel size, fully connected layers on a 1x1
map, squeeze-excite), and element counts (activations, the extra of h-swish, squeeze-excite, residual adds,
pooling). The model is non-negative and linear in them, fitted on the table's entries of every resolution at once by
non-negative least squares on rows scaled by 1/latency (the relative error, the error that is judged):

    layer_ms = sum_f coef[f] * feature_f(layer),   coef >= 0

Exact entries still win: an estimate sums, per layer, the table's entry at the arch's resolution, else the entry of
the same layer measured at other resolutions (mean), else the model. A feature no entry of the table exercises (a
table without h-swish or squeeze-excite) has no coefficient; the metadata lists it as `unidentified`.

Stored as JSON, never pickled: `latency_tables/<device>.opmodel.json` holds the coefficients, the fingerprint of the
table it was fitted on, the spaces and input resolutions it serves, and its error on held-out entries. Prediction is
NumPy only; scipy (installed with scikit-learn) is imported to fit. `ofakit.predict.op_estimator` loads a device's
model and estimates subnets with it.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ofakit import __version__
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_model_file
from ofakit.latency.table import LatencyTable, find_table, layer_key, parse_layer_key
from ofakit.predict.saving import SavedAsJson
from ofakit.schema import build
from ofakit.space import LayerShape
from ofakit.space.mbconv import se_channels

FORMAT = "ofakit-op-model"
VERSION = 1
SUFFIX = ".opmodel.json"
DEPTHWISE_KERNELS = (3, 5, 7)
FEATURES = ("layers", "stem_macs", "pointwise_macs", *(f"depthwise{k}_macs" for k in DEPTHWISE_KERNELS), "fc_macs",
            "se_macs", "se_blocks", "se_elements", "act_elements", "hswish_elements", "residual_elements",
            "pool_elements")
_AT = {name: i for i, name in enumerate(FEATURES)}
HELD_OUT_FOLDS = 5


# -- features ---------------------------------------------------------------------------------------------------
def layer_features(layer: LayerShape) -> np.ndarray:
    """The counts of one layer, in the order of FEATURES (float64).

    Raises LatencyLookupError for an op the model does not describe (a ResNet bottleneck) or a depthwise kernel
    size outside DEPTHWISE_KERNELS.
    """
    (hi, wi, ci), (ho, wo, co) = layer.input, layer.output
    f = np.zeros(len(FEATURES))

    def act(elements: int) -> None:
        f[_AT["act_elements"]] += elements
        if layer.act == "hswish":
            f[_AT["hswish_elements"]] += elements

    f[_AT["layers"]] = 1
    if layer.op == "stem":
        f[_AT["stem_macs"]] = ho * wo * ci * co * layer.kernel ** 2
        act(ho * wo * co)
    elif layer.op == "mbconv":
        mid = layer.mid
        if layer.kernel not in DEPTHWISE_KERNELS:
            raise LatencyLookupError(f"the op model describes depthwise kernels {DEPTHWISE_KERNELS}, not "
                                     f"{layer.kernel} (layer {layer_key(layer)!r})")
        if mid != ci:  # the expand 1x1 conv (absent where the block does not expand)
            f[_AT["pointwise_macs"]] += hi * wi * ci * mid
            act(hi * wi * mid)
        f[_AT[f"depthwise{layer.kernel}_macs"]] = ho * wo * mid * layer.kernel ** 2
        act(ho * wo * mid)
        f[_AT["pointwise_macs"]] += ho * wo * mid * co
        if layer.se:
            f[_AT["se_macs"]] = 2 * mid * se_channels(mid)
            f[_AT["se_blocks"]] = 1
            f[_AT["se_elements"]] = ho * wo * mid
        if layer.skip:
            f[_AT["residual_elements"]] = ho * wo * co
    elif layer.op in ("final_expand", "feature_mix"):
        if hi * wi > 1:  # a 1x1 conv over a map
            f[_AT["pointwise_macs"]] = hi * wi * ci * co
            act(ho * wo * co)
        else:  # over a pooled vector: a matrix-vector product, like the classifier
            f[_AT["fc_macs"]] = ci * co
    elif layer.op == "pool":
        f[_AT["pool_elements"]] = hi * wi * ci
    elif layer.op == "classifier":
        f[_AT["fc_macs"]] = ci * co
    else:
        raise LatencyLookupError(f"the op model describes MobileNet layers (stem, mbconv, final_expand, feature_mix, "
                                 f"pool, classifier), not {layer.op!r}")
    return f


def table_digest(table: LatencyTable) -> str:
    """SHA-256 of what a fit reads from `table` (its statistic of every entry, call overhead), not of its layout."""
    values = {str(r): {k: table.get(r, k).value(table.statistic) for k in sorted(table.entries[r])}
              for r in table.resolutions}
    return hashlib.sha256(json.dumps([table.call_overhead_ms, values], sort_keys=True).encode()).hexdigest()


def _training_rows(table: LatencyTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, ms net of the call overhead, and resolution of each entry the table timed on its own.

    An entry of zero ms never timed (count 0) was timed together with the layer that feeds it (MIT's Pixel 1 table
    times pooling and classifier as one entry): its counts are added to that layer's row.
    """
    overhead = table.call_overhead_ms
    xs, ys, rs = [], [], []
    for r in table.resolutions:
        section = table.entries[r]
        merged: dict[tuple[int, int, int], np.ndarray] = {}
        for key, entry in section.items():
            if entry.count == 0 and entry.value(table.statistic) == 0:
                layer = parse_layer_key(key)
                merged[layer.input] = merged.get(layer.input, 0) + layer_features(layer)
        for key, entry in section.items():
            ms = entry.value(table.statistic) - overhead
            if ms <= 0:
                continue
            layer = parse_layer_key(key)
            xs.append(layer_features(layer) + merged.get(layer.output, 0))
            ys.append(ms)
            rs.append(r)
    if not ys:
        raise ConfigError(f"latency table {table.name!r} has no timed entry to fit an op model on")
    return np.array(xs), np.array(ys), np.array(rs)


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimizing sum((x @ c / y - 1)^2); features that are zero in every row get 0."""
    from scipy.optimize import nnls

    unit = x.max(axis=0)
    used = unit > 0
    coef = np.zeros(x.shape[1])
    solution, _ = nnls(x[:, used] / unit[used] / y[:, None], np.ones(len(y)), maxiter=50 * x.shape[1])
    coef[used] = solution / unit[used]
    return coef


def _errors(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred / y - 1) * 100
    return {"mape_pct": round(float(rel.mean()), 3), "p90_pct": round(float(np.percentile(rel, 90)), 3),
            "max_pct": round(float(rel.max()), 3)}


def _held_out(x: np.ndarray, y: np.ndarray, res: np.ndarray, seed: int) -> dict[str, Any]:
    """Error on entries left out of the fit: whole resolutions left out in turn where the table has several (every
    HELD_OUT_FOLDS-th resolution per fold), else HELD_OUT_FOLDS random folds of entries."""
    resolutions = np.unique(res)
    if len(resolutions) >= HELD_OUT_FOLDS:
        fold = np.searchsorted(resolutions, res) % HELD_OUT_FOLDS
        scheme = f"{HELD_OUT_FOLDS} folds of whole resolutions (every {HELD_OUT_FOLDS}th resolution left out)"
    else:
        fold = np.random.default_rng(seed).permutation(len(y)) % HELD_OUT_FOLDS
        scheme = f"{HELD_OUT_FOLDS} random folds of entries"
    pred = np.empty(len(y))
    for k in range(HELD_OUT_FOLDS):
        test = fold == k
        pred[test] = x[test] @ _nnls_relative(x[~test], y[~test])
    return {"scheme": scheme, **_errors(pred, y)}


# -- the model --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FittedTable:
    """The table an op model was fitted on."""

    space: str  # its space, found as <device>_<space>.json in the table folders
    digest: str  # `table_digest` of it: another version of the table needs a refit
    file: str | None = None
    resolutions: tuple[int, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class OpModelMeta:
    """Where an op model comes from, what it serves and how far off it is on entries left out of its fit."""

    device: str
    table: FittedTable
    spaces: tuple[str, ...]  # the spaces it answers for
    resolution_range: tuple[int, int]  # the input resolutions it answers for (measured or checked)
    fit: dict[str, Any] = field(default_factory=dict)  # entries, method, in-sample errors
    held_out: dict[str, Any] = field(default_factory=dict)  # scheme and errors on entries left out
    unidentified: tuple[str, ...] = ()  # features no entry of the table exercises (coefficient 0)
    published_nets: dict[str, Any] | None = None  # its estimates of the device's published nets, if any
    attribution: str = ""
    license: str = ""
    date: str = ""
    ofakit_version: str = ""

    def __post_init__(self) -> None:
        lo, hi = self.resolution_range
        if not 0 < lo <= hi:
            raise ConfigError(f"resolution_range must be [low, high] with 0 < low <= high, got [{lo}, {hi}]")


class OpModel(SavedAsJson):
    """Per-layer latency of one device from a table's entries and the fitted coefficients.

    Args:
        coef: ms per unit of each of FEATURES.
        meta: where it comes from, what it serves, its errors.
        table: the table it was fitted on (its entries win where they exist); None predicts every layer.
        path: the file it was read from or written to.
    """

    FILE_WHAT = "op model"

    def __init__(self, coef: Sequence[float], meta: OpModelMeta, *, table: LatencyTable | None = None,
                 path: Path | None = None) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)
        if self.coef.shape != (len(FEATURES),) or not np.all(np.isfinite(self.coef)) or (self.coef < 0).any():
            raise ConfigError(f"an op model needs {len(FEATURES)} non-negative coefficients ({', '.join(FEATURES)})")
        self.meta = meta
        self.table = table
        self.path = path
        self._elsewhere: dict[str, float] = {}  # key -> mean entry over the table's resolutions
        if table is not None:
            seen: dict[str, list[float]] = {}
            for r in table.resolutions:
                for key in table.entries[r]:
                    seen.setdefault(key, []).append(table.ms(r, key))
            self._elsewhere = {k: float(np.mean(v)) for k, v in seen.items()}

    @property
    def device(self) -> str:
        return self.meta.device

    @property
    def overhead_ms(self) -> float:
        return self.table.call_overhead_ms if self.table is not None else 0.0

    @property
    def digest(self) -> str:
        """What identifies the model: its coefficients and the digest of its table."""
        return hashlib.sha256(json.dumps([self.coef.tolist(), self.meta.table.digest]).encode()).hexdigest()

    def predict(self, layer: LayerShape) -> float:
        """The model's ms for `layer` (net of the call overhead), ignoring the table."""
        return float(layer_features(layer) @ self.coef)

    def layer_ms(self, resolution: int, layer: LayerShape) -> float:
        """The layer's ms net of the call overhead: the table's entry at `resolution`, else the same layer measured
        at other resolutions, else the model."""
        if self.table is not None:
            key = layer_key(layer)
            if self.table.get(resolution, key) is not None:
                return self.table.ms(resolution, key) - self.overhead_ms
            if key in self._elsewhere:
                return self._elsewhere[key] - self.overhead_ms
        return self.predict(layer)

    # -- JSON -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": dataclasses.asdict(self.meta),
                "model": {"features": list(FEATURES), "coef": self.coef.tolist()}}

    @classmethod
    def load(cls, path: str | Path) -> OpModel:
        """Read a model file (without its table: see `with_table`); a malformed file is a one-line ConfigError."""
        path = Path(path)
        data = read_model_file(path, "op model", FORMAT, VERSION)
        meta, model = build(OpModelMeta, data.get("meta"), f"{path}: meta"), data.get("model")
        if not isinstance(model, Mapping):
            raise ConfigError(f"{path}: 'model' must be an object with 'features' and 'coef'")
        if list(model.get("features", ())) != list(FEATURES):
            raise ConfigError(f"{path}: the model's features are {model.get('features')!r}; this ofakit reads "
                              f"{list(FEATURES)}: refit it")
        coef = model.get("coef")
        if not isinstance(coef, list) or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                 for c in coef):
            raise ConfigError(f"{path}: 'model.coef' must be a list of numbers")
        try:
            return cls(coef, meta, path=path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def with_table(self, table: LatencyTable) -> OpModel:
        """This model with the table it was fitted on, whose entries then win; another version of the table is a
        LatencyLookupError naming the refit."""
        if self.meta.table.digest != table_digest(table):
            raise LatencyLookupError(f"op model {self.path} was fitted on another version of table {table.name!r} "
                                     f"({table.path}); refit it: {how_to_fit(self.device, table.meta['space'])}")
        return OpModel(self.coef, self.meta, table=table, path=self.path)


def how_to_fit(device: str, space: str = "SPACE") -> str:
    return f"python -m ofakit.predict.op_model --device {device} --space {space}"


def fit_op_model(table: LatencyTable, *, spaces: Sequence[str] = (), resolution_range: tuple[int, int] | None = None,
                 seed: int = 0) -> OpModel:
    """Fit the op model of the table's device on its entries.

    Args:
        table: the device's per-layer table (every resolution is fitted at once).
        spaces: the spaces the model serves (default: the table's).
        resolution_range: the input resolutions it serves (default: the table's).
        seed: seeds the held-out folds where they are random.
    """
    x, y, res = _training_rows(table)
    coef = _nnls_relative(x, y)
    meta = OpModelMeta(
        device=str(table.meta.get("device")),
        table=FittedTable(space=str(table.meta.get("space")), digest=table_digest(table),
                          file=table.path.name if table.path else None, resolutions=tuple(table.resolutions),
                          source=str(table.meta.get("source", ""))),
        spaces=tuple(spaces or [str(table.meta.get("space"))]),
        resolution_range=tuple(resolution_range or (min(table.resolutions), max(table.resolutions))),
        fit={"entries": int(len(y)), "method": "non-negative least squares on rows scaled by 1/ms (relative error), "
             "every resolution at once", **_errors(x @ coef, y)},
        held_out=_held_out(x, y, res, seed),
        unidentified=tuple(f for f, ok in zip(FEATURES, x.max(axis=0) > 0) if not ok),
        attribution=str(table.meta.get("attribution", "")),
        license=str(table.meta.get("license", "")),
        date=datetime.date.today().isoformat(),
        ofakit_version=__version__,
    )
    return OpModel(coef, meta, table=table)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ofakit.predict.op_model --device D --space S`: fit the op model of D on its table of S."""
    import argparse

    from ofakit.latency.devices import get_device

    parser = argparse.ArgumentParser(prog="python -m ofakit.predict.op_model", description=main.__doc__)
    parser.add_argument("--device", required=True)
    parser.add_argument("--space", required=True, help="the space of the device's table")
    parser.add_argument("--serves", action="append", default=[], help="a space it serves (default: --space)")
    parser.add_argument("--out", help="file to write (default: <device>.opmodel.json next to the table)")
    args = parser.parse_args(argv)
    name = get_device(args.device).name
    table = find_table(name, args.space)
    model = fit_op_model(table, spaces=args.serves or [args.space])
    print(model.save(args.out or table.path.parent / f"{name}{SUFFIX}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
