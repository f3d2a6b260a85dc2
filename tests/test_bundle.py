"""Bundles: safetensors + JSON, loaded with every key and shape checked, never unpickled."""
from __future__ import annotations

import json

import pytest
import torch

from ofakit.bundle import load_bundle, read_bundle_info, save_bundle
from ofakit.errors import BundleError, ConfigError
from ofakit.space import get_space
from ofakit.supernet import build_supernet


def test_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    net = build_supernet("tiny").eval()
    save_bundle(tmp_path / "b", net, dataset="digits", metrics={"top1_largest": 0.5})
    loaded, info = load_bundle(tmp_path / "b")
    assert info.space == "tiny" and info.dataset == "digits" and info.metrics == {"top1_largest": 0.5}
    x = torch.randn(2, 3, 24, 24)
    arch = get_space("tiny").smallest()
    net.set_active(arch)
    loaded.set_active(arch)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_fp16_bundle_is_half_the_size_and_close(tmp_path):
    torch.manual_seed(0)
    net = build_supernet("tiny").eval()
    save_bundle(tmp_path / "32", net)
    save_bundle(tmp_path / "16", net, dtype="float16")
    size32 = (tmp_path / "32" / "supernet.safetensors").stat().st_size
    size16 = (tmp_path / "16" / "supernet.safetensors").stat().st_size
    assert size16 < 0.6 * size32
    loaded, info = load_bundle(tmp_path / "16")
    assert info.weights_dtype == "float16" and next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-2, atol=1e-3)


def test_wrong_shapes_are_named(tmp_path):
    save_bundle(tmp_path, build_supernet("tiny"))
    meta = json.loads((tmp_path / "bundle.json").read_text())
    meta["space"] = "ofa-mbv3-cifar"
    (tmp_path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"does not fit space 'ofa-mbv3-cifar': \d+ missing: .*wrong shape"):
        load_bundle(tmp_path)


def test_a_pickle_is_refused(tmp_path):
    net = build_supernet("tiny")
    save_bundle(tmp_path, net)
    torch.save(net.state_dict(), tmp_path / "supernet.safetensors")
    with pytest.raises(BundleError, match="pickle / torch.save file, not safetensors"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("length", [128, 384, 0x4B50], ids=["0x80", "0x180", "PK"])
def test_safetensors_whose_header_length_looks_like_a_pickle_or_a_zip_are_read(tmp_path, length):
    """safetensors pads its JSON header to a multiple of 8 bytes; a length of 128 or 384 starts with the byte 0x80
    (a pickle's first byte), one of 0x4B50 with "PK" (a zip's): such files are safetensors all the same."""
    from safetensors.torch import load_file, save_file

    from ofakit.bundle import check_safetensors

    path = tmp_path / "t.safetensors"

    def header(extra: int) -> int:
        save_file({"w": torch.ones(2)}, str(path), metadata={"pad": "x" * extra})
        return int.from_bytes(path.read_bytes()[:8], "little")

    base = header(0)  # metadata grows the header by a byte a character, padded up to a multiple of 8
    for extra in range(max(0, length - base - 16), length - base + 16):
        if header(extra) == length:
            break
    else:
        pytest.fail(f"no header of {length} bytes made")
    assert path.read_bytes()[:2] == length.to_bytes(8, "little")[:2]
    check_safetensors(path)
    assert torch.equal(load_file(str(path))["w"], torch.ones(2))


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="is not a bundle: no bundle.json"):
        read_bundle_info(tmp_path)


@pytest.mark.parametrize(("content", "match"), [
    ({"space": "tiny", "num_classes": "ten"}, r"bundle.json: num_classes: expected an integer, got 'ten'$"),
    ({"space": "tiny", "num_classes": 10, "training": []}, r"bundle.json: training: expected a mapping, got a list$"),
    ({"space": "tiny"}, r"bundle.json: missing key\(s\) 'num_classes'$"),
    (b"\xff\xfe{}", r"bundle.json: not a bundle.json \(not UTF-8 text\)$"),
    (b"{", r"bundle.json: not a bundle.json \(not JSON: "),
])
def test_a_malformed_bundle_json_is_one_line(tmp_path, content, match):
    path = tmp_path / "bundle.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(BundleError if isinstance(content, dict) else ConfigError, match=match):
        read_bundle_info(tmp_path)


def test_a_bundle_of_another_format_is_refused(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({"space": "tiny", "num_classes": 10, "format": 99,
                                                      "ofakit_version": "9.0"}))
    with pytest.raises(BundleError, match=r"bundle.json: bundle format 99 is not supported \(this ofakit reads format "
                                          r"1\); it was written by ofakit 9.0$"):
        read_bundle_info(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"space": "tiny", "num_classes": 10}))
    assert read_bundle_info(tmp_path).format == 1  # no "format": the first one


def test_a_file_is_not_a_bundle(tmp_path):
    (tmp_path / "b").write_text("{}")
    with pytest.raises(BundleError, match=r"b is a file; a bundle is a folder"):
        read_bundle_info(tmp_path / "b")


def test_unknown_keys_and_space(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({"space": "tiny", "num_classes": 10, "colour": "red"}))
    with pytest.raises(BundleError, match="unknown key.*colour"):
        read_bundle_info(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"space": "tinyy", "num_classes": 10}))
    with pytest.raises(Exception, match="Did you mean 'tiny'"):
        read_bundle_info(tmp_path)


def test_save_leaves_no_temporary_files_and_readable_ones(tmp_path):
    """No temporary file stays; the weights get the permissions any other file would (safetensors alone makes them
    0600, unreadable to the other users of a shared machine)."""
    import os

    save_bundle(tmp_path, build_supernet("tiny"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.json", "supernet.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "bundle.json": 0o666 & ~umask, "supernet.safetensors": 0o666 & ~umask}
