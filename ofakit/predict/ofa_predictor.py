"""Import MIT once-for-all accuracy predictors, and encode archs the way MIT's code does.

MIT has two layouts (Cai et al., "Once-for-All", ICLR 2020, section 3.4; code: mit-han-lab/once-for-all):

- ``ofa-tutorial`` (`ofa.tutorial.AccuracyPredictor`, the published ``acc_predictor.pth``): an ``nn.Sequential`` of
  Linear(128, 400)-ReLU-Linear(400, 400)-ReLU-Linear(400, 400)-ReLU-Linear(400, 1), keys ``0.*``, ``2.*``, ``4.*``,
  ``6.*``. Input: 60 kernel one-hots (3 per block slot, kernels 3, 5, 7), then 60 expand one-hots (3, 4, 6), skipped
  slots all zero, then 8 resolution slots at ``(r - 112) // 16``, so it encodes r = 112, 128, ..., 224 one to one.
- ``ofa-nas`` (`ofa.nas.accuracy_predictor.AccuracyPredictor` on a `MobileNetArchEncoder`): ``layers.{i}.0.*``
  ReLU layers, a last ``layers.{n}.weight`` without bias, and ``base_acc`` added to the output. Input: one slot per
  resolution of the encoder's ``image_size_list`` first, then 60 kernel and 60 expand one-hots as above.

Both output a top-1 fraction (0-1). The checkpoint is read with ``torch.load(weights_only=True)``; the result is an
ordinary `AccuracyPredictor` (NumPy at inference) whose ``meta["mit_resolutions"]`` lists the resolutions the MIT
encoding has a slot for, in slot order. A search must only propose those: see `predictor_resolutions` and
`predictor_space`.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError, BundleError
from ofakit.predict.accuracy import AccuracyPredictor
from ofakit.space import SearchSpace, get_space
from ofakit.space.mbconv import MBConvSpace

LAYOUTS = ("ofa-tutorial", "ofa-nas")
KERNELS = (3, 5, 7)  # one-hot order of MIT's encoders (ks_map / ks_list)
EXPANDS = (3, 4, 6)  # (ex_map / expand_list)
N_STAGES, STAGE_SLOTS = 5, 4
N_SLOTS = N_STAGES * STAGE_SLOTS
TUTORIAL_RESOLUTIONS = tuple(range(112, 225, 16))  # slot (r - 112) // 16 of the tutorial encoding
# MIT's checkpoints do not record the encoder's image_size_list; by the number of resolution inputs, MIT's defaults:
# 1: MobileNetArchEncoder(); 4: AccuracyDataset.build_acc_dataset(); 25: every 4 px of the OFA range 128-224.
NAS_DEFAULT_RESOLUTIONS = {1: (224,), 4: (128, 160, 192, 224), 25: tuple(range(128, 225, 4))}


# -- encoding ---------------------------------------------------------------------------------------------------
def check_mit_space(space: SearchSpace) -> None:
    """Raise BundleError unless `space` has MIT's MobileNetV3 layout (5 stages of 4 slots, kernels 3/5/7, expands
    3/4/6), which is all MIT's predictors encode."""
    ok = (isinstance(space, MBConvSpace) and space.num_slots == N_SLOTS
          and all(len(slots) == STAGE_SLOTS for slots in space.stage_slots)
          and set(space.spec.kernel_choices) <= set(KERNELS) and set(space.spec.expand_choices) <= set(EXPANDS))
    if not ok:
        raise BundleError(f"MIT's accuracy predictors encode the OFA MobileNetV3 layout (5 stages of 4 blocks, "
                          f"kernels 3/5/7, expands 3/4/6); space {space.name!r} does not have it. "
                          "Use ofa-mbv3-w1.0 or ofa-mbv3-w1.2")


def encode_mit(space: SearchSpace, archs: Sequence[ArchConfig], layout: str,
               resolutions: Sequence[int] | None) -> np.ndarray:
    """MIT's input features of `archs`, float64, one row per arch, exactly as MIT's encoder builds them.

    Args:
        space: the space of the archs (MIT's MobileNetV3 layout).
        archs: archs of `space`.
        layout: "ofa-tutorial" or "ofa-nas".
        resolutions: the resolutions the encoding has a slot for, in slot order (``meta["mit_resolutions"]``);
            None for the tutorial layout means its 8 slots 112-224.

    Raises:
        ArchError: an arch of another space, an illegal value in an active slot, or a resolution without a slot.
    """
    if layout not in LAYOUTS:
        raise BundleError(f"unknown MIT predictor encoding {layout!r}; known: {', '.join(LAYOUTS)}")
    check_mit_space(space)
    if resolutions is None:
        if layout == "ofa-nas":
            raise BundleError("an 'ofa-nas' predictor needs its resolution list (meta 'mit_resolutions')")
        resolutions = TUTORIAL_RESOLUTIONS
    r_slot = {int(r): i for i, r in enumerate(resolutions)}
    n_r = len(r_slot)
    width = mit_input_width(resolutions)
    if layout == "ofa-tutorial":  # [kernel 60][expand 60][resolution 8]
        k_base, e_base, r_base = 0, 3 * N_SLOTS, 6 * N_SLOTS
    else:  # [resolution |R|][kernel 60][expand 60]
        k_base, e_base, r_base = n_r, n_r + 3 * N_SLOTS, 0
    n = len(archs)
    slots = np.empty(n, dtype=np.int64)
    for i, arch in enumerate(archs):
        if arch.space != space.name:
            raise ArchError(f"arch of space {arch.space!r} given to a predictor for space {space.name!r}")
        slot = r_slot.get(arch.resolution)
        if slot is None:
            listed = ", ".join(str(r) for r in resolutions)
            raise ArchError(f"resolution {arch.resolution} cannot be encoded by MIT's {layout!r} predictor "
                            f"(it encodes: {listed}); search only those resolutions")
        if len(arch.depths) != N_STAGES or len(arch.kernel_sizes) != N_SLOTS or len(arch.expand_ratios) != N_SLOTS:
            space.validate(arch)  # raises ArchError naming the wrong field
        slots[i] = slot
    out = np.zeros((n, width), dtype=np.float64)
    if n == 0:
        return out
    depths = np.array([a.depths for a in archs], dtype=np.int64)
    kernels = np.array([a.kernel_sizes for a in archs], dtype=np.float64)
    expands = np.array([a.expand_ratios for a in archs], dtype=np.float64)
    active = np.arange(STAGE_SLOTS)[None, None, :] < depths[:, :, None]  # [n, stage, position]
    active = active.reshape(n, N_SLOTS)
    k_idx, k_ok = _choice_index(kernels, KERNELS)
    e_idx, e_ok = _choice_index(expands, EXPANDS)
    legal_depth = np.isin(depths, space.spec.depth_choices).all(axis=1)
    bad = np.flatnonzero(~legal_depth | (active & ~(k_ok & e_ok)).any(axis=1))
    if bad.size:
        space.validate(archs[int(bad[0])])  # raises ArchError naming the value and where
        raise ArchError(f"arch {archs[int(bad[0])].to_dict()} has a value without a slot in MIT's encoding")
    rows, cols = np.nonzero(active)
    out[rows, k_base + 3 * cols + k_idx[rows, cols]] = 1.0
    out[rows, e_base + 3 * cols + e_idx[rows, cols]] = 1.0
    out[np.arange(n), r_base + slots] = 1.0
    return out


def mit_input_width(resolutions: Sequence[int] | None) -> int:
    """The number of inputs of MIT's predictor with resolution slots `resolutions` (None: the tutorial's 8): a
    kernel and an expand one-hot per block slot (3 + 3 each) and one input per resolution slot."""
    return 6 * N_SLOTS + len(set(TUTORIAL_RESOLUTIONS if resolutions is None else resolutions))


def _choice_index(values: np.ndarray, choices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value in `choices` (sorted), and whether the value is one of them."""
    idx = np.minimum(np.searchsorted(choices, values), len(choices) - 1)
    return idx, np.asarray(choices)[idx] == values


# -- what a search may propose ----------------------------------------------------------------------------------
def predictor_resolutions(pred: AccuracyPredictor, space: SearchSpace) -> tuple[int, ...]:
    """The resolutions of `space` that `pred` can encode (all of them for ofakit's own encoding)."""
    if pred.space != space.name:
        raise ArchError(f"the predictor is for space {pred.space!r}, not {space.name!r}")
    if pred.encoding == "ofakit":
        return tuple(space.resolutions)
    encodable = pred.meta.get("mit_resolutions") or (TUTORIAL_RESOLUTIONS if pred.encoding == "ofa-tutorial" else ())
    return tuple(r for r in space.resolutions if r in set(encodable))


def predictor_space(pred: AccuracyPredictor, space: SearchSpace) -> SearchSpace:
    """`space` restricted to the resolutions `pred` can encode, for sampling and mutation in a search
    (`restrict_resolutions`). Raises BundleError when no resolution is left.
    """
    allowed = predictor_resolutions(pred, space)
    if not allowed:
        encodable = ", ".join(str(r) for r in pred.meta.get("mit_resolutions", ()))
        raise BundleError(f"the predictor encodes none of the resolutions of space {space.name!r} "
                          f"({space.resolutions[0]}-{space.resolutions[-1]}); it encodes: {encodable}")
    return restrict_resolutions(space, allowed)


def restrict_resolutions(space: SearchSpace, allowed: Sequence[int]) -> SearchSpace:
    """`space` with only the resolutions `allowed` (a non-empty subset of its own, in its order).

    The copy keeps the space's name and encoding (archs stay archs of `space`); only `resolutions` (what `sample`,
    `mutate`, `largest` and `smallest` draw from) shrinks. `space` itself when nothing is left out.
    """
    allowed = tuple(r for r in space.resolutions if r in set(allowed))
    if not allowed:
        raise ValueError(f"no resolution of space {space.name!r} is allowed")
    if allowed == tuple(space.resolutions):
        return space
    restricted = copy.copy(space)
    restricted.encode = space.encode  # type: ignore[method-assign]  # the space's features, not the subset's
    restricted.resolutions = allowed
    return restricted


# -- import -----------------------------------------------------------------------------------------------------
def _detect_layout(state: Mapping[str, object]) -> tuple[str, int]:
    """("ofa-tutorial" | "ofa-nas", number of linear layers) from the keys; BundleError when neither fits."""
    keys = set(state)
    n = sum(1 for k in keys if k.endswith(".weight"))
    tutorial = {f"{2 * i}.{p}" for i in range(n) for p in ("weight", "bias")}
    nas = {f"layers.{i}.0.{p}" for i in range(n - 1) for p in ("weight", "bias")} | {f"layers.{n - 1}.weight",
                                                                                     "base_acc"}
    if n >= 2 and keys == tutorial:
        return "ofa-tutorial", n
    if n >= 2 and keys == nas:
        return "ofa-nas", n
    shown = ", ".join(sorted(keys)[:6]) + (", ..." if len(keys) > 6 else "")
    raise BundleError(f"not a MIT accuracy predictor: keys {shown}; expected the ofa.tutorial layout (0.weight, "
                      "0.bias, 2.weight, ..., 6.bias) or the ofa.nas layout (layers.0.0.weight, ..., "
                      "layers.3.weight, base_acc)")


def import_ofa_predictor(path: str | Path, space: str, *,
                         resolutions: Sequence[int] | None = None) -> AccuracyPredictor:
    """MIT's accuracy predictor at `path` as an ofakit `AccuracyPredictor` for `space` (same predictions).

    Args:
        path: MIT's ``acc_predictor.pth`` (a state dict, or ``{"state_dict": ...}``), read with weights_only=True.
        space: the space the predictor was trained on (MIT's MobileNetV3 layout: ofa-mbv3-w1.0 or ofa-mbv3-w1.2).
        resolutions: for the ofa-nas layout, the encoder's ``image_size_list`` in order; by default inferred from
            the number of resolution inputs (1: 224; 4: 128, 160, 192, 224; 25: 128-224 every 4 px).

    Raises:
        BundleError: an unsafe or unreadable file, an unknown layout, inconsistent shapes, a space MIT's encoding
            does not fit, a resolution that is not a positive whole number, or a predictor that encodes none of the
            space's resolutions.
    """
    from ofakit.interop.ofa_checkpoint import load_ofa_checkpoint

    sp = get_space(space)
    check_mit_space(sp)
    if resolutions is not None:
        bad = [r for r in resolutions if isinstance(r, bool) or not isinstance(r, int) or r < 1]
        if bad:
            raise BundleError(f"resolutions must be positive whole numbers (input sizes in pixels), got {bad[0]!r}")
    raw = {k.removeprefix("module."): v for k, v in load_ofa_checkpoint(path).items()}
    layout, n = _detect_layout(raw)
    bad = [k for k, v in raw.items() if not v.is_floating_point()]
    if bad:
        raise BundleError(f"{path}: tensor {bad[0]!r} is not floating point; not a MIT accuracy predictor")
    state = {k: v.detach().double().numpy() for k, v in raw.items()}
    if layout == "ofa-tutorial":
        weights = [state[f"{2 * i}.weight"] for i in range(n)]
        biases = [state[f"{2 * i}.bias"] for i in range(n)]
    else:
        weights = [state[f"layers.{i}.0.weight"] for i in range(n - 1)] + [state[f"layers.{n - 1}.weight"]]
        biases = [state[f"layers.{i}.0.bias"] for i in range(n - 1)]
    _check_shapes(path, weights, biases)
    n_inputs = weights[0].shape[1]
    if layout == "ofa-tutorial":
        if resolutions is not None and tuple(resolutions) != TUTORIAL_RESOLUTIONS:
            raise BundleError("the ofa.tutorial layout has fixed resolution slots (112-224 every 16 px); "
                              "do not pass resolutions for it")
        if n_inputs != mit_input_width(None):
            raise BundleError(f"{path}: the ofa.tutorial layout takes 128 inputs, this one takes {n_inputs}")
        mit_resolutions = TUTORIAL_RESOLUTIONS
    else:
        n_r = n_inputs - 6 * N_SLOTS
        if n_r < 1:
            raise BundleError(f"{path}: an ofa.nas predictor takes |R| + 120 inputs, this one takes {n_inputs}")
        if resolutions is None:
            if n_r not in NAS_DEFAULT_RESOLUTIONS:
                raise BundleError(f"{path} encodes {n_r} resolutions and MIT's file does not say which; pass them "
                                  f"in the order of its MobileNetArchEncoder(image_size_list=...), e.g. "
                                  f"--resolutions R1 ... R{n_r}")
            resolutions = NAS_DEFAULT_RESOLUTIONS[n_r]
        if len(resolutions) != n_r or len(set(resolutions)) != n_r:
            raise BundleError(f"{path} encodes {n_r} resolutions, but {len(resolutions)} (distinct: "
                              f"{len(set(resolutions))}) were given")
        mit_resolutions = tuple(int(r) for r in resolutions)
    arrays: dict[str, np.ndarray] = {}
    for i, w in enumerate(weights):
        arrays[f"w{i}"] = w
    for i, b in enumerate(biases):
        arrays[f"b{i}"] = b
    if layout == "ofa-nas":
        arrays["offset"] = state["base_acc"].reshape(1)
    pred = AccuracyPredictor(space=sp.name, kind="mlp", arrays=arrays, encoding=layout,
                             meta={"layers": n, "mit_resolutions": list(mit_resolutions),
                                   "source": f"MIT once-for-all {layout} predictor {Path(path).name}"})
    predictor_space(pred, sp)  # raises when no resolution of the space is encodable
    return pred


def _check_shapes(path: str | Path, weights: list[np.ndarray], biases: list[np.ndarray]) -> None:
    for i, w in enumerate(weights):
        if w.ndim != 2 or (i > 0 and w.shape[1] != weights[i - 1].shape[0]):
            raise BundleError(f"{path}: linear layer {i} has shape {tuple(w.shape)}, which does not follow "
                              f"layer {i - 1}'s output")
    if weights[-1].shape[0] != 1:
        raise BundleError(f"{path}: the last layer must have 1 output, it has {weights[-1].shape[0]}")
    for i, b in enumerate(biases):
        if b.shape != (weights[i].shape[0],):
            raise BundleError(f"{path}: bias {i} has shape {tuple(b.shape)}, expected ({weights[i].shape[0]},)")
