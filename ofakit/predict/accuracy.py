"""Accuracy predictors: map an arch to its expected top-1 (a fraction), fast enough to score whole populations.

Two kinds, both evaluated in NumPy (no torch import):
- ``mlp``: a ReLU multi-layer perceptron on the space's one-hot encoding, like OFA's predictor
  (weights in ``predictor.safetensors``); also the form of predictors imported from MIT's once-for-all.
- ``gbm``: scikit-learn gradient-boosted trees, stored as plain arrays (no pickles).

Files in a bundle: ``predictor.json`` (kind, space, encoding, metrics) and ``predictor.safetensors`` (arrays). They
are saved one after the other, so each save tags the pair with a digest of the arrays (the JSON's ``arrays_digest``,
the arrays file's metadata): a pair from two saves (a kill between the two writes) is refused on load. Files saved
before the tag (the shipped reference bundle's) carry it in neither and load as they are.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, BundleError, ConfigError
from ofakit.io import atomic_path, atomic_write_json, file_version, read_json_file, read_user_mapped
from ofakit.predict.trees import check_gbm_arrays, gbm_predict, gbm_to_arrays
from ofakit.schema import build
from ofakit.space import SearchSpace, get_space
from ofakit.space.genome import Genome

PREDICTOR_JSON = "predictor.json"
PREDICTOR_ARRAYS = "predictor.safetensors"


@dataclass
class AccuracyPredictor:
    """A fitted predictor: `predict(archs)` -> top-1 fractions, one per arch."""

    space: str
    kind: str  # "mlp" or "gbm"
    arrays: dict[str, np.ndarray]
    encoding: str = "ofakit"  # how archs become features: "ofakit" (space.encode) or a MIT layout
    meta: dict[str, Any] = field(default_factory=dict)  # metrics, samples, source
    # the files it was loaded from ((path, inode, mtime, size) each): `for_rows` keeps its folded layers for them
    loaded_from: tuple | None = field(default=None, compare=False, repr=False)

    def features(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        space = get_space(self.space)
        for arch in archs:
            if arch.space != self.space:
                raise ArchError(f"arch of space {arch.space!r} given to a predictor for space {self.space!r}")
        if self.encoding == "ofakit":
            return space.encode(archs)
        from ofakit.predict.ofa_predictor import encode_mit

        return encode_mit(space, archs, self.encoding, self.meta.get("mit_resolutions"))

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        return self.predict_features(self.features(archs))

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "mlp":
            return _mlp(self._mlp_layers(), x, self.arrays)
        if self.kind == "gbm":
            return gbm_predict(self.arrays, x)
        raise BundleError(f"unknown predictor kind {self.kind!r}; known: mlp, gbm")

    def _mlp_layers(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """(weight transposed, bias or None) per linear layer."""
        n = self.meta.get("layers", sum(1 for k in self.arrays if k.startswith("w")))
        return [(self.arrays[f"w{i}"].T, self.arrays.get(f"b{i}")) for i in range(n)]

    def for_rows(self, genome: Genome) -> Callable[[np.ndarray], np.ndarray]:
        """Predictions for genome rows (what a search holds), without building archs.

        Every one-hot encoding is linear in the rows' one-hot choices (`Genome.linear_map`); for an MLP that map
        is folded into the first layer and the layers run in float32 (the precision MIT's torch predictor runs
        in); other kinds get the mapped features. An encoding that is not linear falls back to decode + predict.
        The folded layers of a predictor loaded from a bundle are kept for the process, by its files and the
        genome's resolutions: a second search with the same files skips the fit (its arrays are not changed in place
        after loading).
        """
        space = get_space(self.space)
        if genome.space.name != space.name:
            raise ArchError(f"rows of space {genome.space.name!r} given to a predictor for space {self.space!r}")
        key = self.loaded_from and (self.loaded_from, tuple(genome.space.resolutions), genome.width)
        fast = _FOLDED.get(key) if key else None
        if fast is None:
            mapping = genome.linear_map(self.features)
            if mapping is None:
                return lambda rows: self.predict(genome.decode(rows))
            if self.kind != "mlp":
                return lambda rows: self.predict_features(genome.onehot(rows) @ mapping)
            layers = self._mlp_layers()
            w0, b0 = layers[0]
            layers[0] = (mapping @ w0, b0)
            fast = [(np.ascontiguousarray(w, dtype=np.float32), None if b is None else b.astype(np.float32))
                    for w, b in layers]  # C order: BLAS runs ~30 % faster on it than on the transposed view
            if key:
                if len(_FOLDED) >= 8:
                    _FOLDED.clear()
                _FOLDED[key] = fast
        return lambda rows: _mlp(fast, genome.onehot(rows), self.arrays).astype(np.float64)

    # -- files ----------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """predictor.safetensors, then predictor.json (each atomically), both tagged with the arrays' digest."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        digest = arrays_digest(arrays)
        with atomic_path(directory / PREDICTOR_ARRAYS) as tmp:
            save_file(arrays, str(tmp), metadata={DIGEST_KEY: digest})
        atomic_write_json(directory / PREDICTOR_JSON, {"space": self.space, "kind": self.kind,
                                                       "encoding": self.encoding, "meta": self.meta,
                                                       "arrays_digest": digest})

    @classmethod
    def load(cls, directory: str | Path) -> AccuracyPredictor:
        """The predictor stored in a bundle folder; a missing, malformed or inconsistent file is one BundleError or
        ConfigError line naming it."""
        from ofakit.bundle import check_safetensors

        directory = Path(directory)
        meta_path = directory / PREDICTOR_JSON
        if not meta_path.exists():
            raise BundleError(f"{directory} has no accuracy predictor ({PREDICTOR_JSON}); fit one with: "
                              f"ofakit predictor fit --bundle {directory} --data DATA --samples 500, or import "
                              "MIT's with: ofakit import-ofa --predictor acc_predictor.pth --space SPACE --out DIR")
        info = read_json_file(meta_path, "an accuracy predictor file",
                              build=lambda data: build(PredictorInfo, data, str(meta_path)))
        weights = directory / PREDICTOR_ARRAYS
        check_safetensors(weights)
        tag, arrays = read_user_mapped(weights, "accuracy predictor weights (safetensors)", _read_arrays)
        if tag != info.arrays_digest:
            raise BundleError(
                f"{meta_path} and {weights} do not belong together (a save was interrupted between them: the "
                f"JSON's arrays digest is {info.arrays_digest or 'absent'}, the arrays' {tag or 'absent'}); refit "
                f"with `ofakit predictor fit --bundle {directory} --data DATA`, or import MIT's again with "
                "`ofakit import-ofa --predictor FILE --force`")
        _check_arrays(info, arrays, str(weights))
        files = (file_version(meta_path), file_version(weights))
        return cls(space=info.space, kind=info.kind, arrays=arrays, encoding=info.encoding, meta=info.meta,
                   loaded_from=files)


def _read_arrays(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """The digest tag of a predictor's arrays file ("" when it has none) and its arrays as float64 (its own,
    writable copies)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        tag = (fh.metadata() or {}).get(DIGEST_KEY, "")
        return tag, {k: fh.get_tensor(k).astype(np.float64, copy=False) for k in fh.keys()}


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """A short digest of named arrays (names, dtypes, shapes and bytes): what ties predictor.json to its arrays."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(arrays):
        v = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{v.dtype.str}:{v.shape};".encode())
        h.update(v.tobytes())
    return h.hexdigest()[:16]


DIGEST_KEY = "ofakit_arrays_digest"  # the arrays file's metadata key holding `arrays_digest`


@dataclass(frozen=True)
class PredictorInfo:
    """What predictor.json holds (its arrays are in predictor.safetensors)."""

    space: str  # the search space the predictor scores
    kind: str  # one of KINDS
    encoding: str = "ofakit"  # "ofakit" (space.encode) or a MIT layout
    meta: dict[str, Any] = field(default_factory=dict)  # metrics, samples, source; "layers" for an MLP
    arrays_digest: str = ""  # the digest its arrays file is tagged with ("": files saved before the tag)

    def __post_init__(self) -> None:
        from ofakit.predict.ofa_predictor import LAYOUTS, TUTORIAL_RESOLUTIONS, check_mit_space

        space = get_space(self.space)  # an unknown space names the known ones
        if self.kind not in KINDS:
            raise BundleError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.encoding not in ("ofakit", *LAYOUTS):
            raise BundleError(f"encoding {self.encoding!r} is not one of ofakit, {', '.join(LAYOUTS)}")
        layers = self.meta.get("layers")
        if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
            raise BundleError(f"meta: layers must be a positive integer, got {layers!r}")
        resolutions = self.meta.get("mit_resolutions")
        if resolutions is not None and not (isinstance(resolutions, list) and all(
                isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in resolutions)):
            raise BundleError(f"meta: mit_resolutions must be a list of positive integers, got {resolutions!r}")
        if resolutions is not None and len(set(resolutions)) != len(resolutions):
            raise BundleError(f"meta: mit_resolutions lists a resolution twice: {resolutions}; each input slot has "
                              "its own resolution")
        if self.encoding == "ofa-tutorial" and resolutions is not None \
                and tuple(resolutions) != TUTORIAL_RESOLUTIONS:
            raise BundleError(f"meta: the ofa-tutorial encoding has fixed resolution slots "
                              f"{list(TUTORIAL_RESOLUTIONS)}, got mit_resolutions {resolutions}")
        if self.encoding == "ofa-nas" and resolutions is None:
            raise BundleError("meta: an 'ofa-nas' predictor needs its resolution list (mit_resolutions)")
        if self.encoding != "ofakit":
            check_mit_space(space)


KINDS = ("mlp", "gbm")
# a loaded MLP's layers folded for rows of a genome, by (its files, the genome's resolutions, its width): a second
# search with the same predictor skips the fit of the row map (~6 ms on MIT's predictor); see `for_rows`
_FOLDED: dict[tuple, list[tuple[np.ndarray, np.ndarray | None]]] = {}


def _check_arrays(info: PredictorInfo, arrays: dict[str, np.ndarray], where: str) -> None:
    """The arrays `info.kind` reads are there, finite, with shapes that chain from the encoding's features (an MLP
    ends in one output; its offset is one number)."""
    from ofakit.predict.ofa_predictor import mit_input_width

    if info.encoding == "ofakit":
        space = get_space(info.space)
        width = space.encode([space.smallest()]).shape[1]
    else:
        width = mit_input_width(info.meta.get("mit_resolutions"))
    for name, value in arrays.items():
        if not np.isfinite(value).all():
            raise BundleError(f"{where}: array {name} holds a number that is not finite (NaN or infinity); refit "
                              "the predictor")
    if "offset" in arrays and arrays["offset"].shape != (1,):
        raise BundleError(f"{where}: array offset must hold one number (shape (1,)), got shape "
                          f"{arrays['offset'].shape}")
    if info.kind == "gbm":
        try:
            check_gbm_arrays(arrays, features=width, where=where)
        except ConfigError as exc:
            raise BundleError(str(exc)) from None
        return
    n = info.meta.get("layers", sum(1 for k in arrays if k.startswith("w")))
    missing = [f"w{i}" for i in range(n) if f"w{i}" not in arrays]
    if n < 1 or missing:
        raise BundleError(f"{where}: an mlp predictor of {n} layers needs arrays {', '.join(missing) or 'w0'}")
    for i in range(n):
        w, b = arrays[f"w{i}"], arrays.get(f"b{i}")
        if w.ndim != 2 or (width is not None and w.shape[1] != width) or (b is not None and b.shape != w.shape[:1]):
            given = "features" if i == 0 else "outputs of the layer before"
            raise BundleError(f"{where}: layer {i} has weights {w.shape} and bias {None if b is None else b.shape}, "
                              f"which do not take the {width} {given}")
        width = w.shape[0]
    if width != 1:
        raise BundleError(f"{where}: the last layer has {width} outputs; a predictor has one")


def _mlp(layers: list[tuple[np.ndarray, np.ndarray | None]], x: np.ndarray, arrays: dict) -> np.ndarray:
    """ReLU MLP on rows of `x`; its one output, plus the stored offset (in float64)."""
    for i, (w, b) in enumerate(layers):
        x = x @ w
        if b is not None:
            x += b
        if i < len(layers) - 1:
            np.maximum(x, 0.0, out=x)
    return x[:, 0] + np.float64(arrays["offset"][0] if "offset" in arrays else 0.0)


# -- fitting ----------------------------------------------------------------------------------------------------
def _fit_mlp(x: np.ndarray, y: np.ndarray, *, hidden: int, layers: int, epochs: int, seed: int) -> dict:
    import torch

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast and does not fight other work
    dims = [x.shape[1]] + [hidden] * layers + [1]
    mods: list[torch.nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods)
    offset = float(y.mean())
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y - offset).float()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.mse_loss(net(xt[idx]).squeeze(1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    torch.set_num_threads(threads)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    arrays = {}
    for i, lin in enumerate(linears):
        arrays[f"w{i}"] = lin.weight.detach().double().numpy().copy()
        arrays[f"b{i}"] = lin.bias.detach().double().numpy().copy()
    arrays["offset"] = np.array([offset])
    return arrays


def _fit(kind: str, x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 100) -> dict[str, np.ndarray]:
    if kind == "mlp":
        return _fit_mlp(x, y, hidden=400, layers=3, epochs=epochs, seed=seed)
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=400, max_depth=3, learning_rate=0.05, subsample=0.8,
                                      random_state=seed)
    model.fit(x, y)
    return gbm_to_arrays(model)


def rank_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Kendall tau, Spearman rho and RMSE; a rank correlation is NaN where either side is constant (no warning: the
    cross-validation leaves such folds out)."""
    import warnings

    from scipy.stats import kendalltau, spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's ConstantInputWarning
        tau, rho = float(kendalltau(pred, true)[0]), float(spearmanr(pred, true)[0])
    return {"kendall_tau": tau, "spearman": rho, "rmse": float(np.sqrt(np.mean((pred - true) ** 2)))}


def _held_out(n: int, holdout: float) -> int:
    """How many of `n` records `fit_accuracy_predictor` keeps out of the fit (at least 2)."""
    return max(2, int(holdout * n))


def min_records(folds: int = 5, holdout: float = 0.2) -> int:
    """The fewest records `fit_accuracy_predictor` takes: every cross-validation fold then validates on at least 2
    subnets of those left after the held-out ones (a Kendall tau of one subnet is undefined)."""
    n = 2 * folds
    while n - _held_out(n, holdout) < 2 * folds:
        n += 1
    return n


def fit_accuracy_predictor(space: SearchSpace, archs: Sequence[ArchConfig], accuracies: Sequence[float], *,
                           kinds: Sequence[str] = ("mlp", "gbm"), folds: int = 5, holdout: float = 0.2,
                           seed: int = 0, mlp_epochs: int = 100) -> AccuracyPredictor:
    """Fit each kind, choose by K-fold cross-validated Kendall tau on the training part, report held-out metrics,
    and refit the winner on all records.

    A fold whose tau is undefined (its subnets' accuracies, or predictions, all tie) does not count in its kind's mean;
    when no fold of any kind ranks anything, the records cannot choose a predictor: a ConfigError.
    """
    x = space.encode(archs).astype(np.float64)
    y = np.asarray(accuracies, dtype=np.float64)
    if len(y) < min_records(folds, holdout):
        raise ConfigError(f"need at least {min_records(folds, holdout)} (arch, accuracy) records to fit a predictor "
                          f"({folds} cross-validation folds of at least 2 subnets each, beside the held-out ones), "
                          f"got {len(y)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_hold = _held_out(len(y), holdout)
    hold, train = order[:n_hold], order[n_hold:]
    cv: dict[str, float] = {}
    for kind in kinds:
        taus = []
        for f in range(folds):
            val = train[f::folds]
            fit = np.setdiff1d(train, val)
            p = AccuracyPredictor(space.name, kind, _fit(kind, x[fit], y[fit], seed, mlp_epochs)).predict_features(x[val])
            taus.append(rank_metrics(p, y[val])["kendall_tau"])
        ranked = [t for t in taus if not np.isnan(t)]
        cv[kind] = float(np.mean(ranked)) if ranked else float("nan")
    if all(np.isnan(v) for v in cv.values()):
        raise ConfigError(f"cross-validation could not rank any subnet: in every fold the recorded accuracies (or "
                          f"every kind's predictions) tie, over {len(y)} records (accuracies "
                          f"{y.min():.4f}-{y.max():.4f}); evaluate on more validation images (--val-batches) or "
                          "more subnets (--samples), or check that the supernet is trained")
    best = max((k for k in cv if not np.isnan(cv[k])), key=cv.get)
    held = AccuracyPredictor(space.name, best, _fit(best, x[train], y[train], seed, mlp_epochs)).predict_features(x[hold])
    metrics = rank_metrics(held, y[hold])
    arrays = _fit(best, x, y, seed, mlp_epochs)
    meta = {"samples": int(len(y)), "cv_kendall_tau": cv, "chosen": best, "heldout": metrics,
            "heldout_samples": int(n_hold)}
    if best == "mlp":
        meta["layers"] = sum(1 for k in arrays if k.startswith("w"))
    return AccuracyPredictor(space.name, best, arrays, meta=meta)
