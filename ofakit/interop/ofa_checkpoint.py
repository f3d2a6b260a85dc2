"""Import MIT once-for-all supernet checkpoints (`ofa_mbv3_d234_e346_k357_w1.0/w1.2`,
`ofa_proxyless_d234_e346_k357_w1.3`, `ofa_resnet50`) into ofakit supernets.

Checkpoints are read with `torch.load(..., weights_only=True)`, which refuses arbitrary pickled objects. Keys are
renamed to ofakit's layout; kernel-transformation matrices keep MIT's convention (applied as x @ M^T), so every
subnet gives the same outputs as MIT's implementation for the same weights.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofakit.errors import BundleError
from ofakit.space import SearchSpace, get_space
from ofakit.space.mbconv import MBConvSpace

if TYPE_CHECKING:
    import torch

    from ofakit.supernet import Supernet

MIT_SPACES = ("ofa-mbv3-w1.0", "ofa-mbv3-w1.2", "ofa-proxyless-w1.3", "ofa-resnet50")
_BN = r"bn\.(?:bn\.)?(weight|bias|running_mean|running_var|num_batches_tracked)"
_W = r"(?:conv\.)?weight"

# (pattern on MIT's key, our key; "{b}" is the block index minus one for blocks after the first)
_MBCONV_RULES: list[tuple[str, str]] = [
    (rf"first_conv\.conv\.{_W}", "stem_conv.weight"),
    (rf"first_conv\.{_BN}", "stem_bn.{0}"),
    (rf"blocks\.0\.conv\.depth_conv\.conv\.{_W}", "first_block.dw_conv.weight"),
    (rf"blocks\.0\.conv\.depth_conv\.{_BN}", "first_block.dw_bn.{0}"),
    (rf"blocks\.0\.conv\.point_linear\.conv\.{_W}", "first_block.project_conv.weight"),
    (rf"blocks\.0\.conv\.point_linear\.{_BN}", "first_block.project_bn.{0}"),
    (rf"blocks\.(\d+)\.conv\.inverted_bottleneck\.conv\.{_W}", "blocks.{b}.expand_conv.weight"),
    (rf"blocks\.(\d+)\.conv\.inverted_bottleneck\.{_BN}", "blocks.{b}.expand_bn.{1}"),
    (rf"blocks\.(\d+)\.conv\.depth_conv\.conv\.{_W}", "blocks.{b}.dw_conv.weight"),
    (r"blocks\.(\d+)\.conv\.depth_conv\.conv\.(\d)to(\d)_matrix", "blocks.{b}.dw_conv.transform_{1}to{2}"),
    (rf"blocks\.(\d+)\.conv\.depth_conv\.{_BN}", "blocks.{b}.dw_bn.{1}"),
    (r"blocks\.(\d+)\.conv\.depth_conv\.se\.fc\.(reduce|expand)\.(weight|bias)", "blocks.{b}.se.{1}.{2}"),
    (rf"blocks\.(\d+)\.conv\.point_linear\.conv\.{_W}", "blocks.{b}.project_conv.weight"),
    (rf"blocks\.(\d+)\.conv\.point_linear\.{_BN}", "blocks.{b}.project_bn.{1}"),
    (rf"final_expand_layer\.conv\.{_W}", "final_expand_conv.weight"),
    (rf"final_expand_layer\.{_BN}", "final_expand_bn.{0}"),
    (rf"feature_mix_layer\.conv\.{_W}", "feature_mix_conv.weight"),
    (rf"feature_mix_layer\.{_BN}", "feature_mix_bn.{0}"),
    (r"classifier\.linear\.(?:linear\.)?(weight|bias)", "classifier.{0}"),
]

_RESNET_RULES: list[tuple[str, str]] = [
    (rf"input_stem\.([02])\.conv\.{_W}", "stem{0}.conv.weight"),
    (rf"input_stem\.([02])\.{_BN}", "stem{0}.bn.{1}"),
    (rf"input_stem\.1\.conv\.conv\.{_W}", "stem1.conv.weight"),
    (rf"input_stem\.1\.conv\.{_BN}", "stem1.bn.{0}"),
    (rf"blocks\.(\d+)\.conv([123])\.conv\.{_W}", "blocks.{0}.conv{1}.weight"),
    (rf"blocks\.(\d+)\.conv([123])\.{_BN}", "blocks.{0}.bn{1}.{2}"),
    (rf"blocks\.(\d+)\.downsample\.conv\.{_W}", "blocks.{0}.down_conv.weight"),
    (rf"blocks\.(\d+)\.downsample\.{_BN}", "blocks.{0}.down_bn.{1}"),
    (r"classifier\.linear\.(?:linear\.)?(weight|bias)", "classifier.{0}"),
]


def rename_ofa_key(key: str, space: SearchSpace) -> str | None:
    """ofakit's name for a key of MIT's state dict, or None if no rule matches."""
    key = key.removeprefix("module.").replace(".mobile_inverted_conv.", ".conv.")
    rules = _MBCONV_RULES if isinstance(space, MBConvSpace) else _RESNET_RULES
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match:
            groups = match.groups()
            b = int(groups[0]) - 1 if "{b}" in target else None
            return target.format(*groups, b=b)
    return None


def convert_ofa_state_dict(state: dict[str, torch.Tensor], space: SearchSpace) -> dict[str, torch.Tensor]:
    """MIT's state dict renamed to ofakit's keys; raises BundleError listing keys that no rule knows."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = rename_ofa_key(key, space)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        guess = guess_ofa_space(state)
        hint = f"; it looks like a checkpoint of space {guess!r}" if guess and guess != space.name else ""
        raise BundleError(f"checkpoint has {len(unknown)} key(s) that are not part of MIT's "
                          f"{space.name!r} supernet: {', '.join(unknown[:3])}{more}{hint}")
    return out


def guess_ofa_space(state: dict[str, torch.Tensor]) -> str | None:
    """The ofakit space of a MIT checkpoint, from its key layout and stem width (None if unrecognised)."""
    keys = [k.removeprefix("module.") for k in state]
    if any(k.startswith("input_stem.") for k in keys):
        return "ofa-resnet50"
    stem = state.get("first_conv.conv.weight", state.get("module.first_conv.conv.weight"))
    if stem is None:
        return None
    has_final_expand = any(k.startswith("final_expand_layer.") for k in keys)
    for name in ("ofa-mbv3-w1.0", "ofa-mbv3-w1.2", "ofa-proxyless-w1.3"):
        sp = get_space(name)
        if isinstance(sp, MBConvSpace) and sp.spec.stem_width == stem.shape[0] \
                and (sp.spec.head == "mbv3") == has_final_expand:
            return name
    return None


def load_ofa_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a MIT checkpoint safely (weights_only); accepts a bare state dict or {"state_dict": ...}.

    Anything else (a folder, a text file, a truncated or corrupt file, a pickle of other objects) is one BundleError
    line naming the file.
    """
    import pickle

    import torch

    path = Path(path)
    if path.is_dir():
        raise BundleError(f"checkpoint {str(path)!r} is a folder; expected a PyTorch checkpoint file (.pth)")
    if not path.is_file():
        raise BundleError(f"checkpoint {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise BundleError(f"cannot read checkpoint {str(path)!r}: {exc.strerror or exc}") from None
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip, or its legacy pickle format
        raise BundleError(f"{path} is not a PyTorch checkpoint (a torch.save file: a zip archive or a pickle)")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error: ([^\n]+?)(?: was not an allowed|\. Please|$)", str(exc), re.M)
        raise BundleError(f"refusing to load {path}: it holds more than tensors "
                          f"({found[1] if found else 'objects of other types'}); ofakit loads checkpoints with "
                          "weights_only=True only") from None
    except Exception as exc:  # a truncated or corrupt file fails anywhere in torch's reader, with any error type
        first = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else ""
        raise BundleError(f"cannot read checkpoint {path}: truncated or corrupt ({type(exc).__name__}"
                          + (f": {first})" if first else ")")) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise BundleError(f"{path} is not a state dict of tensors (nor {{'state_dict': ...}})")
    return obj


def import_ofa_supernet(path: str | Path, space: str, *, num_classes: int | None = None) -> Supernet:
    """An ofakit supernet of `space` holding the weights of MIT checkpoint `path` (shapes checked)."""
    from ofakit.bundle import check_state_dict
    from ofakit.supernet import build_supernet

    sp = get_space(space)
    if sp.name not in MIT_SPACES:
        raise BundleError(f"MIT once-for-all publishes no supernet for space {sp.name!r}; "
                          f"import-ofa supports: {', '.join(MIT_SPACES)}")
    raw = load_ofa_checkpoint(path)
    try:
        state = convert_ofa_state_dict(raw, sp)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    classes = num_classes or _classes_in(state) or sp.num_classes
    supernet = build_supernet(sp, num_classes=classes)
    expected = supernet.state_dict()
    try:
        check_state_dict(expected, state, what=f"checkpoint {path}", space=sp.name)
    except BundleError as exc:
        guess = guess_ofa_space(raw)
        if guess and guess != sp.name:
            raise BundleError(f"{exc}; it looks like a checkpoint of space {guess!r}") from None
        raise
    supernet.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return supernet.eval()


def _classes_in(state: dict[str, torch.Tensor]) -> int | None:
    bias = state.get("classifier.bias")
    return int(bias.shape[0]) if bias is not None else None
