"""Importing MIT once-for-all checkpoints gives the same outputs as MIT's own implementation.

The reference logits in tests/fixtures/ofa/ were computed by MIT's `ofa` package (see its README there) for
deterministic weights that tests/fixtures/ofa/weights.py rebuilds here, so no MIT code runs in these tests.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ofakit.errors import BundleError
from ofakit.interop.ofa_checkpoint import guess_ofa_space, import_ofa_supernet, load_ofa_checkpoint
from ofakit.interop.ofa_config import arch_from_ofa_args

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ofa"
CHECKPOINTS = {
    "ofa_mbv3_d234_e346_k357_w1.0": "ofa-mbv3-w1.0",
    "ofa_mbv3_d234_e346_k357_w1.2": "ofa-mbv3-w1.2",
    "ofa_proxyless_d234_e346_k357_w1.3": "ofa-proxyless-w1.3",
    "ofa_resnet50": "ofa-resnet50",
}


def _weights_module():
    spec = importlib.util.spec_from_file_location("ofa_fixture_weights", FIXTURES / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mit_checkpoint(name: str, path: Path, *, wrap: bool = False) -> Path:
    """Write MIT's state dict (its real key list, deterministic values) with torch.save, as MIT's zoo files are."""
    keys = json.loads((FIXTURES / f"{name}.keys.json").read_text())["keys"]
    state = _weights_module().deterministic_state_dict({k: shape for k, shape, _ in keys}, seed=0)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    torch.save({"state_dict": tensors} if wrap else tensors, path)
    return path


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_every_subnet_matches_mit(name, tmp_path):
    space = CHECKPOINTS[name]
    supernet = import_ofa_supernet(mit_checkpoint(name, tmp_path / "ckpt.pth", wrap=name.endswith("w1.2")), space)
    reference = json.loads((FIXTURES / f"{name}.reference.json").read_text())
    logits = np.load(FIXTURES / f"{name}.logits.npz")
    x = torch.from_numpy(np.random.default_rng(reference["input"]["seed"])
                         .standard_normal(reference["input"]["shape"]).astype(np.float32))
    assert len(reference["subnets"]) >= 6
    for subnet in reference["subnets"]:
        arch = arch_from_ofa_args(space, 224, **subnet["mit_args"])
        supernet.set_active(arch)
        with torch.no_grad():
            got = supernet(x).numpy()
        want = logits[subnet["logits_file_key"]]
        scale = max(1.0, float(np.abs(want).max()))  # fp32 rounding grows with the logits' size (ResNet: ~8)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale, err_msg=subnet["kind"])
        # the weights make logits depend only weakly on the input; compare that dependence on its own scale (the
        # atol is a few fp32 roundings of the logits: summation order changes with the thread count)
        np.testing.assert_allclose(got[0] - got[1], want[0] - want[1], rtol=1e-3, atol=2e-6 * scale,
                                   err_msg=subnet["kind"])


def test_subnets_differ_from_each_other():
    """Guard for the test above: the reference subnets are distinguishable at its tolerance."""
    logits = np.load(FIXTURES / "ofa_mbv3_d234_e346_k357_w1.0.logits.npz")
    outs = [logits[k] for k in sorted(logits.files)]
    gaps = [np.abs(a - b).max() for i, a in enumerate(outs) for b in outs[i + 1:]]
    assert min(gaps) > 1e-3


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_guess_space_from_checkpoint(name, tmp_path):
    state = torch.load(mit_checkpoint(name, tmp_path / "c.pth"), weights_only=True)
    assert guess_ofa_space(state) == CHECKPOINTS[name]


def test_wrong_space_names_the_right_one(tmp_path):
    path = mit_checkpoint("ofa_resnet50", tmp_path / "r.pth")
    with pytest.raises(BundleError, match="looks like a checkpoint of space 'ofa-resnet50'"):
        import_ofa_supernet(path, "ofa-mbv3-w1.0")


def test_same_layout_other_width_reports_shapes(tmp_path):
    path = mit_checkpoint("ofa_mbv3_d234_e346_k357_w1.0", tmp_path / "m.pth")
    with pytest.raises(BundleError, match=r"does not fit space 'ofa-mbv3-w1.2': .*wrong shape: stem_conv.weight"):
        import_ofa_supernet(path, "ofa-mbv3-w1.2")


class _Payload:
    pass


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(BundleError, match="weights_only=True"):
        import_ofa_supernet(path, "ofa-mbv3-w1.0")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        import_ofa_supernet(tmp_path / "nope.pth", "ofa-mbv3-w1.0")


@pytest.mark.parametrize(("content", "match"), [
    (b"notes: not a checkpoint\n", r"notes.pth is not a PyTorch checkpoint \(a torch.save file"),
    (b"", r"notes.pth is not a PyTorch checkpoint"),
    ("truncated", r"cannot read checkpoint .*notes.pth: truncated or corrupt \(RuntimeError: "),
    ("folder", r"checkpoint '.*notes.pth' is a folder; expected a PyTorch checkpoint file"),
    ("list", r"notes.pth is not a state dict of tensors"),
])
def test_what_is_not_a_checkpoint_is_one_line(tmp_path, content, match):
    path = tmp_path / "notes.pth"
    if content == "folder":
        path.mkdir()
    elif content == "truncated":
        torch.save({"w": torch.zeros(64)}, path)
        path.write_bytes(path.read_bytes()[:100])
    elif content == "list":
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(BundleError, match=match) as info:
        load_ofa_checkpoint(path)
    assert "\n" not in str(info.value)


def test_a_refused_pickle_names_what_it_holds_not_how_to_load_it_unsafely(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(BundleError) as info:
        load_ofa_checkpoint(path)
    message = str(info.value)
    assert "Unsupported global" in message and "weights_only=True only" in message
    assert "weights_only` set to `False`" not in message and "\x1b" not in message
