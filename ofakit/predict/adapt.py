"""A latency model for a new device from a few measured subnets, with the shipped devices' models as prior knowledge.

Devices differ, but not arbitrarily: a new GPU at batch 32 ranks subnets much as another GPU at batch 32 does. So the
model of a new device is a small fit on the log-estimates of source models (other devices' latency estimators for
the same space), not a model of the architecture from scratch (Lee et al., "HELP: Hardware-Adaptive Efficient Latency
Prediction for NAS via Meta-Learning", NeurIPS 2021, make the same point with a meta-learned predictor):

    log ms = intercept + sum_j coef[j] * log(source_j ms)

Candidates: for each source and each of three strengths, a combination of all sources shrunk towards that source
alone (ridge), with the weights summing to 1: a subnet k times slower on every source is about k times slower on the
device (at 2,000 records of each HELP GPU setting, the unconstrained best weights sum to 0.98-1.03), and holding the
sum removes the weight that 20 records estimate worst. The weights are fitted for the 20th percentile of the records'
log residuals (quantile regression), the intercept then set where most records lie (the mode of the residuals).
Timing noise is one-sided: a disturbed run is only ever slower, so a device's records have a tight lower side and a
tail or a second cluster above (HELP's RTX 2080 Ti at batch 32, Titan Xp at batch 1); a fit for the mean, or even the
median, is pulled by that tail and tilts the weights, while the lower side fixes them. Each candidate is scored by
leave-one-out over the records (a Gaussian kernel of the log error with the tolerance as its width: a record counts
by how nearly it lands within +-10 %; all the leave-one-out fits of a candidate at once, as masks), and the best
three are averaged, those within 1.25x of the best's score: with 20 records, picking a single candidate is itself
noisy. The error of the whole procedure, cross-validated, is kept in the metadata with the record count and the
sources.

Stored as JSON (`<device>.adapted.json`, never pickled) with the sources' names and file digests: the model is
only valid with the sources it was fitted on, so a changed source is an error naming the command to refit.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofakit import __version__
from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError, LatencyLookupError
from ofakit.io import read_model_file, save_text_file
from ofakit.latency.estimate import Estimator
from ofakit.latency.measure import LatencyRecord
from ofakit.latency.table import table_dirs
from ofakit.metrics import error_metrics
from ofakit.predict.latency import arch_digest
from ofakit.predict.saving import SavedAsJson
from ofakit.space import get_space
from ofakit.space.genome import Genome

FORMAT = "ofakit-adapted-latency"
VERSION = 1
SUFFIX = ".adapted.json"
MIN_RECORDS = 3
TOLERANCE = float(np.log(1.1))  # +-10 %, in log ms
RIDGE_ALPHAS = (1.0, 3.0, 10.0)  # strengths of the pull towards one source
PRIORS = 4  # the sources pulled towards: those that best match the records alone (times a factor)
QUANTILE = 0.2  # the weights are fitted for this quantile of the records' log residuals
IRLS_STEPS = 30  # reweighted least-squares steps of the quantile fit
KEEP = 3  # candidates averaged at most
KEEP_WITHIN = 1.25  # ... of those whose leave-one-out error is at most this many times the best one's
CV_FOLDS = 5  # cross-validation of the whole fit, for the metadata
Resolve = Callable[[str, str], Estimator]  # (device, space) -> that device's estimator (ofakit.predict.estimators)


# -- fitting ----------------------------------------------------------------------------------------------------
# Every fit below runs for many subsets of the records at once: `mask` [F, n] marks the records each of F fits may
# use (leave-one-out is F = n fits, each without one record), so scoring a candidate is a few batched array operations.
def _quantile(x: np.ndarray, keep: np.ndarray, q: float) -> np.ndarray:
    """Per row, the `q` quantile (linear interpolation) of the values of `x` where `keep` (every row keeps one)."""
    ordered = np.sort(np.where(keep, x, np.inf), axis=1)
    pos = q * (keep.sum(axis=1) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, keep.sum(axis=1) - 1)
    rows = np.arange(len(x))
    return ordered[rows, lo] + (pos - lo) * (ordered[rows, hi] - ordered[rows, lo])


def _mode_shift(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the shift that most of its kept values lie within TOLERANCE of (ties: the median of the tied),
    refined to the median of those values."""
    close = np.abs(d[:, :, None] - d[:, None, :]) <= TOLERANCE
    count = np.where(mask, (close & mask[:, :, None]).sum(axis=1), -1)
    top = count == count.max(axis=1, keepdims=True)
    centre = _quantile(d, top, 0.5)
    inliers = mask & (np.abs(d - centre[:, None]) <= TOLERANCE)
    return _quantile(d, np.where(inliers.any(axis=1, keepdims=True), inliers, top), 0.5)


def _low_quantile_fit(z: np.ndarray, t: np.ndarray, mask: np.ndarray, alpha: float,
                      prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `mask`, (intercept, coef) of t ~ z on the kept records: coef sums to 1 and minimises the check
    loss at QUANTILE plus alpha * |coef - prior|^2 (iteratively reweighted least squares, the sum held by a Lagrange
    multiplier); the intercept is then the mode shift of the residuals."""
    f, k = len(mask), z.shape[1]
    m = mask.astype(np.float64)
    w = m
    kkt = np.zeros((f, k + 1, k + 1))
    kkt[:, :k, k] = kkt[:, k, :k] = 1.0
    for _ in range(IRLS_STEPS):
        zm = (w @ z) / w.sum(axis=1, keepdims=True)
        tm = (w @ t) / w.sum(axis=1)
        zc = z[None, :, :] - zm[:, None, :]
        kkt[:, :k, :k] = np.einsum("fnk,fn,fnl->fkl", zc, w, zc) + alpha * np.eye(k)
        rhs = np.einsum("fnk,fn->fk", zc, w * (t[None, :] - tm[:, None] - zc @ prior))
        coef = prior + np.linalg.solve(kkt, np.concatenate([rhs, np.zeros((f, 1))], axis=1)[..., None])[:, :k, 0]
        res = t[None, :] - np.einsum("nk,fk->fn", z, coef)
        r = res - _quantile(res, mask, QUANTILE)[:, None]
        w = m * np.where(r > 0, QUANTILE, 1 - QUANTILE) / np.maximum(np.abs(r), 1e-3)
    return _mode_shift(res, mask), coef


Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(log-estimates z [n, sources], log ms t [n], mask [F, n]) -> (intercepts [F], coefs [F, sources])"""


def _alone(j: int) -> Fit:
    """Source `j` times a factor: the mode shift of the records' log ratios."""
    def fit(z: np.ndarray, t: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _mode_shift(np.broadcast_to(t - z[:, j], mask.shape), mask), np.broadcast_to(np.eye(z.shape[1])[j],
                                                                                            (len(mask), z.shape[1]))
    return fit


def _towards(j: int, alpha: float) -> Fit:
    """The candidate shrunk towards source `j` alone with strength `alpha`."""
    return lambda z, t, mask: _low_quantile_fit(z, t, mask, alpha, np.eye(z.shape[1])[j])


def loo_error(fit: Fit, z: np.ndarray, t: np.ndarray) -> float:
    """Leave-one-out error of a candidate: the mean over records of 1 - exp(-(e / TOLERANCE)^2 / 2), e the absolute
    log error: ~0 for a record predicted closely, ~1 for one far outside +-10 % (a disturbed timing counts as one
    miss, not as its size)."""
    b, coef = fit(z, t, ~np.eye(len(t), dtype=bool))
    err = b + np.einsum("nk,nk->n", z, coef) - t
    return float(np.mean(1.0 - np.exp(-0.5 * (err / TOLERANCE) ** 2)))


def fit_combination(z: np.ndarray, t: np.ndarray) -> tuple[str, float, np.ndarray, dict[str, float]]:
    """(names of the kept candidates, intercept, coef, every candidate's leave-one-out error).

    Candidates: for each of the PRIORS sources that best match the records alone (times a factor, by leave-one-out)
    and each strength a in RIDGE_ALPHAS, `towards:j:a`, a low-quantile combination of all sources shrunk towards
    source j (`_low_quantile_fit`). The three with the lowest leave-one-out error are averaged (in log ms): with 20
    records, picking one candidate is itself noisy.
    """
    alone = [loo_error(_alone(j), z, t) for j in range(z.shape[1])]
    cands = {f"towards:{j}:{a:g}": _towards(j, a) for j in np.argsort(alone, kind="stable")[:PRIORS]
             for a in RIDGE_ALPHAS}
    scores = {name: loo_error(fit, z, t) for name, fit in cands.items()}
    ranked = sorted(scores, key=scores.get)
    keep = [name for name in ranked[:KEEP] if scores[name] <= KEEP_WITHIN * scores[ranked[0]]]
    fits = [cands[name](z, t, np.ones((1, len(t)), dtype=bool)) for name in keep]
    return ("+".join(keep), float(np.mean([f[0][0] for f in fits])), np.mean([f[1][0] for f in fits], axis=0),
            scores)


def _named(kind: str, names: Sequence[str]) -> str:
    """A candidate's name with its source index replaced by the source device ('towards:1:3' -> 'towards:v100:3')."""
    stem, j, alpha = kind.split(":")
    return f"{stem}:{names[int(j)]}:{alpha}"


def source_entry(device: str, estimator: Estimator) -> dict[str, Any]:
    """What identifies a source model: its device, estimator kind and the SHA-256 of its file (if it has one)."""
    path = getattr(estimator, "path", None)
    table = getattr(estimator, "table", None)
    path = path or getattr(table, "path", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None
    return {"device": device, "estimator": estimator.name, "file": Path(path).name if path else None,
            "sha256": digest}


def adapt(device: str, space: str, records: Sequence[LatencyRecord], sources: Mapping[str, Estimator], *,
          meta: Mapping[str, Any] | None = None) -> AdaptedEstimator:
    """Fit the model of `device` for `space` on measured `records` (`ofakit.latency.measure.read_measured` reads
    them; the reference timings are not used), over the estimates of `sources` (device name -> its estimator for
    the space).

    Raises ConfigError for fewer than MIN_RECORDS distinct subnets or no source, ArchError for an arch that is not
    one of the space.
    """
    records = list({r.arch: r for r in records}.values())
    for r in records:
        get_space(space).validate(r.arch)
    if len(records) < MIN_RECORDS:
        raise ConfigError(f"need at least {MIN_RECORDS} measured subnets to adapt a latency model, got "
                          f"{len(records)}; 20 give about the accuracy of a model fitted on thousands")
    if not sources:
        raise ConfigError(f"no source device serves space {space!r}: adapting needs another device's model of it")
    names = list(sources)
    archs = [r.arch for r in records]
    ms = np.array([r.measured_ms for r in records], dtype=np.float64)
    z = np.log(np.column_stack([sources[n].estimate_batch(archs) for n in names]))
    t = np.log(ms)
    kind, intercept, coef, scores = fit_combination(z, t)
    kind = "+".join(_named(k, names) for k in kind.split("+"))
    cv = np.empty(len(t))  # the whole procedure (candidates, choice, average), CV_FOLDS-fold
    folds = min(CV_FOLDS, len(t))
    for f in range(folds):
        test = np.arange(f, len(t), folds)
        _, b, c, _ = fit_combination(np.delete(z, test, axis=0), np.delete(t, test))
        cv[test] = b + z[test] @ c
    info = {"device": device, "space": space, "kind": kind, "records": len(records),
            "sources": [source_entry(n, sources[n]) for n in names],
            "cv": {"method": f"{folds}-fold, the whole fit in each fold",
                   **{k: round(v, 4) for k, v in error_metrics(np.exp(cv), ms).items()}},
            "candidates_loo_error": {_named(k, names): round(v, 4) for k, v in scores.items()},
            "resolution_range": [min(a.resolution for a in archs), max(a.resolution for a in archs)],
            "date": datetime.date.today().isoformat(), "ofakit_version": __version__, **(meta or {}),
            "fitted_archs": sorted(arch_digest(a) for a in archs)}
    return AdaptedEstimator(sources, intercept, coef, info)


# -- the estimator ----------------------------------------------------------------------------------------------
class AdaptedEstimator(SavedAsJson):
    """The adapted model as an Estimator (`ofakit.latency.estimate`): no table behind it.

    Args:
        sources: device name -> estimator, in the order of `coef`.
        intercept: in log ms.
        coef: one weight per source.
        meta: device, space, kind, records, sources (with file digests), cross-validated error, fitted subnets.
        path: the file it was read from or written to.
    """

    FILE_WHAT = "adapted latency model"

    name = "adapted"
    table = None

    def __init__(self, sources: Mapping[str, Estimator], intercept: float, coef: Sequence[float],
                 meta: Mapping[str, Any], *, path: Path | None = None) -> None:
        self.sources = dict(sources)
        self.intercept = float(intercept)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.meta = dict(meta)
        self.path = path
        self.space = get_space(str(self.meta["space"]))
        self._fitted = frozenset(self.meta.get("fitted_archs", ()))
        self._used = [(est, w) for est, w in zip(self.sources.values(), self.coef) if w != 0.0]

    def _combine(self, logs: Sequence[np.ndarray]) -> np.ndarray:
        return np.exp(self.intercept + sum(w * x for (_, w), x in zip(self._used, logs)))

    def estimate(self, arch: ArchConfig, *, scale: float = 1.0) -> float:
        """Estimated latency of `arch` in ms."""
        return float(self.estimate_batch([arch], scale=scale)[0])

    def estimate_batch(self, archs: Sequence[ArchConfig], *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms, float64, one per arch."""
        if not len(archs):
            return np.zeros(0)
        return scale * self._combine([np.log(est.estimate_batch(archs)) for est, _ in self._used])

    def estimate_rows(self, genome: Genome, rows: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Estimated latencies in ms of genome rows (what a search holds), float64."""
        if not len(rows):
            return np.zeros(0)
        return scale * self._combine([np.log(est.estimate_rows(genome, rows)) for est, _ in self._used])

    def additive(self, scale: float = 1.0) -> None:
        """None: a product of powers of other models is not a sum over layers."""
        return None

    def fitted_on(self, arch: ArchConfig) -> bool:
        """Whether `arch` was one of the measured subnets the model was fitted on."""
        return arch_digest(arch) in self._fitted

    def serves(self, resolutions: Sequence[int]) -> tuple[int, ...]:
        """Those of `resolutions` every model it combines estimates."""
        for est, _ in self._used:
            resolutions = est.serves(resolutions)
        return tuple(resolutions)

    # -- JSON ---------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "model": {"intercept": self.intercept, "coef": self.coef.tolist()}}

    @classmethod
    def load(cls, path: str | Path, resolve: Resolve) -> AdaptedEstimator:
        """Read a model file and its sources (through `resolve`); a malformed file is a ConfigError, a source whose
        file changed since the fit a LatencyLookupError naming the refit."""
        path = Path(path)
        meta, model = read_adapted_file(path)
        space, sources = meta["space"], meta["sources"]
        try:
            coef = [float(c) for c in model["coef"]]
            intercept = float(model["intercept"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: malformed adapted latency model ({exc})") from None
        names = [s["device"] for s in sources]
        if len(coef) != len(names):
            raise ConfigError(f"{path}: {len(coef)} weights for {len(names)} source devices")
        resolved = {}
        for entry, name, w in zip(sources, names, coef):
            est = resolve(name, space)
            if w and entry.get("sha256") and source_entry(name, est)["sha256"] != entry["sha256"]:
                raise LatencyLookupError(
                    f"{path}: the latency model of source device {name!r} changed since this model was adapted; "
                    f"refit: ofakit latency adapt --device {meta.get('device')} --space {space} --records FILE")
            resolved[name] = est
        return cls(resolved, intercept, coef, meta, path=path)


def read_adapted_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The meta and model objects of an adapted model file, with what its meta must hold checked (device, space,
    record count, cross-validated error, sources that name their device); a malformed file is a ConfigError naming
    it."""
    data = read_model_file(path, "adapted latency model", FORMAT, VERSION)
    meta, model = data.get("meta"), data.get("model")
    if not isinstance(meta, Mapping) or not isinstance(model, Mapping):
        raise ConfigError(f"{path}: malformed adapted latency model ('meta' and 'model' must be objects)")
    wrong = [key for key, ok in (("device", isinstance(meta.get("device"), str)),
                                 ("space", isinstance(meta.get("space"), str)),
                                 ("records", type(meta.get("records")) is int),
                                 ("cv", isinstance(meta.get("cv"), Mapping)),
                                 ("sources", isinstance(meta.get("sources"), list) and all(
                                     isinstance(e, Mapping) and isinstance(e.get("device"), str)
                                     for e in meta["sources"])))
             if not ok]
    if wrong:
        raise ConfigError(f"{path}: malformed adapted latency model (meta needs device and space names, a records "
                          f"count, a cv object and a list of sources naming their device; wrong: {', '.join(wrong)})")
    return dict(meta), dict(model)


def describe(model: AdaptedEstimator) -> dict[str, Any]:
    """What a report says about an adapted model: the records and sources it was fitted on and its cross-validated
    error."""
    m = model.meta
    return {"kind": "few-shot adaptation", "device": m["device"], "file": model.path.name if model.path else None,
            "spaces": [m["space"]], "records": m["records"], "sources": [s["device"] for s in m["sources"]],
            "cv": m["cv"], "resolution_range": m.get("resolution_range")}


# -- where adapted devices live ---------------------------------------------------------------------------------
def adapted_file(device: str, source: str = "") -> Path | None:
    """The adapted model of `device` (canonical name): next to its device file `source` first, then in the table
    folders; None if none."""
    folders = ([Path(source).parent] if source else []) + table_dirs()
    for folder in folders:
        path = folder / f"{device}{SUFFIX}"
        if path.is_file():
            return path
    return None


def load_adapted(device: str, space: str, resolve: Resolve) -> AdaptedEstimator:
    """The adapted model of `device` (name or alias) for `space`; LatencyLookupError naming the adapt command when
    there is none or it is of another space."""
    from ofakit.latency.devices import get_device

    spec = get_device(device)
    how = f"ofakit latency adapt --device {spec.name} --space {space} --records MEASURED.jsonl"
    path = adapted_file(spec.name, spec.source)
    if path is None:
        raise LatencyLookupError(f"device {spec.name!r} has no adapted latency model; measure ~20 subnets on it and "
                                 f"run: {how}")
    model = AdaptedEstimator.load(path, resolve)
    if model.space.name != space:
        raise LatencyLookupError(f"{path} is adapted for space {model.space.name!r}, not {space!r}; run: {how}")
    return model


def device_yaml(device: str, *, kind: str, backend: str, batch: int, model_file: str, records: int,
                sources: Sequence[str]) -> str:
    """The YAML of a user device that only has an adapted model (estimate-only: ofakit does not reach it)."""
    return (f"# Estimate-only device made by `ofakit latency adapt` from {records} measured subnets\n"
            f"# over the models of {', '.join(sources)}.\n# Its latency model is {model_file}, next to this file. "
            "Put this folder in $OFAKIT_DEVICES_PATH\n# for ofakit to find both.\n"
            f"name: {device}\nkind: {kind}\ndescription: adapted from {records} measured subnets ({', '.join(sources)})"
            f"\nbackend:\n  name: {backend}\n  batch: {batch}\nreach:\n  via: local\n")


# -- a device from a records file (what `ofakit latency adapt` runs) --------------------------------------------------
@dataclass(frozen=True)
class Adapted:
    """What `adapt_device` made: the model, where it was written, and the device file it wrote (None when the device
    already existed)."""

    model: AdaptedEstimator
    path: Path
    device_file: Path | None


def user_devices_dir() -> Path:
    """Where a new user device goes: the first folder of $OFAKIT_DEVICES_PATH, else ~/.config/ofakit/devices (or
    under $XDG_CONFIG_HOME)."""
    from ofakit.latency.devices import DEVICES_PATH_ENV

    listed = [p for p in os.environ.get(DEVICES_PATH_ENV, "").split(os.pathsep) if p]
    if listed:
        return Path(listed[0])
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "ofakit" / "devices"


def source_models(space: str, resolve: Resolve, *, names: Sequence[str] = (),
                  exclude: str = "") -> dict[str, Estimator]:
    """Device name -> estimator for `space`: of `names` (each must serve the space), or by default of every shipped
    device that serves it, `exclude` left out."""
    from ofakit.errors import UnknownNameError
    from ofakit.latency.devices import devices, get_device, shipped_dir

    if names:
        return {get_device(n).name: resolve(n, space) for n in dict.fromkeys(names)}
    shipped = shipped_dir("devices").resolve()
    out = {}
    for name in devices().names():
        spec = get_device(name)
        if spec.name == exclude or spec.name in out or Path(spec.source).resolve().parent != shipped:
            continue
        try:
            out[spec.name] = resolve(spec.name, space)
        except (LatencyLookupError, ConfigError, UnknownNameError):
            continue  # serves no model of the space
    return out


def adapt_device(device: str, space: str, records: Sequence[LatencyRecord], resolve: Resolve, *,
                 sources: Sequence[str] = (), out: Path | None = None) -> Adapted:
    """Fit `device`'s model for `space` on `records` over the models of `sources` (default: every shipped device
    serving the space) and write it.

    A device ofakit does not know becomes a user device: `<name>.yaml` (estimate-only, described like the source
    that weighs most) and `<name>.adapted.json` in `out`'s folder, or in `user_devices_dir()`. A known device gets the
    model next to its device file when that is a user's, else in ./latency_tables (both are where ofakit looks).
    """
    from ofakit.errors import UnknownNameError
    from ofakit.latency.devices import get_device, reload_devices, shipped_dir

    try:
        spec = get_device(device)
    except UnknownNameError:
        spec = None
    name = spec.name if spec else device
    if out is not None and out.name != f"{name}{SUFFIX}":
        raise ConfigError(f"--out must be named {name}{SUFFIX} (ofakit finds the model by that name, next to the "
                          f"device file or in a table folder), got {out.name!r}")
    models = source_models(space, resolve, names=sources, exclude=name)
    archs = [r.arch for r in records]
    usable = {}
    for src, est in models.items():
        try:
            est.estimate_batch(archs)
            usable[src] = est
        except LatencyLookupError:
            if sources:
                raise
    model = adapt(name, space, records, usable)
    if spec is None:
        folder = out.parent if out else user_devices_dir()
    elif Path(spec.source).resolve().parent != shipped_dir("devices").resolve():
        folder = Path(spec.source).parent
    else:
        folder = Path("latency_tables")
    path = out or folder / f"{name}{SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    device_file = None
    if spec is None:
        closest = get_device(list(usable)[int(np.argmax(np.abs(model.coef)))])
        device_file = folder / f"{name}.yaml"
        save_text_file(device_file, device_yaml(name, kind=closest.kind, backend=closest.backend.name,
                                                batch=closest.backend.batch, model_file=path.name,
                                                records=model.meta["records"], sources=list(usable)), "device file")
        reload_devices()
    return Adapted(model, path, device_file)
