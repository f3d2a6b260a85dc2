"""`ofakit arch sample|info|from-ofa`: ArchConfig JSON in and out, MACs and params, MIT net.config conversion."""
from __future__ import annotations

import copy
import dataclasses
import json
import random
from pathlib import Path

import pytest

from ofakit.arch import ArchConfig
from ofakit.interop.ofa_config import ofa_config_from_arch
from ofakit.space import SPACES, get_space


def _write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- arch sample ------------------------------------------------------------------------------------------------
def test_sample_prints_a_valid_arch(cli):
    result = cli("arch", "sample", "--space", "tiny", "--seed", "3")
    assert result.code == 0
    arch = ArchConfig.from_json(result.out)
    assert arch.space == "tiny"
    get_space("tiny").validate(arch)


def test_sample_is_reproducible(cli):
    first = cli("arch", "sample", "--space", "tiny", "--seed", "3").out
    assert cli("arch", "sample", "--space", "tiny", "--seed", "3").out == first
    others = {cli("arch", "sample", "--space", "tiny", "--seed", str(seed)).out for seed in (4, 5, 6)}
    assert first not in others


@pytest.mark.parametrize("space", SPACES.names())
@pytest.mark.parametrize("which", ["random", "largest", "smallest"])
def test_sample_every_space(cli, space, which):
    result = cli("arch", "sample", "--space", space, "--which", which)
    assert result.code == 0, result.err
    arch = ArchConfig.from_json(result.out)
    sp = get_space(space)
    sp.validate(arch)
    if which == "largest":
        assert arch == sp.largest()
    elif which == "smallest":
        assert arch == sp.smallest()


def test_sample_out_writes_the_file(cli, tmp_path):
    out = tmp_path / "sub" / "arch.json"
    result = cli("arch", "sample", "--space", "tiny", "--seed", "3", "--out", out)
    assert result.code == 0
    assert result.out == ""
    assert str(out) in result.err
    assert out.read_text() == cli("arch", "sample", "--space", "tiny", "--seed", "3").out
    assert ArchConfig.load(out).space == "tiny"


def test_sample_info_goes_to_stderr(cli):
    result = cli("arch", "sample", "--space", "tiny", "--which", "largest", "--info")
    assert result.code == 0
    assert ArchConfig.from_json(result.out) == get_space("tiny").largest()  # stdout stays pure JSON
    assert "MACs" in result.err and "params" in result.err


def test_sample_out_to_a_directory_is_an_error(cli, tmp_path):
    cli("arch", "sample", "--space", "tiny", "--out", tmp_path).assert_user_error("cannot write", str(tmp_path))


# -- arch info --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES.names())
def test_info_json(cli, tmp_path, space):
    sp = get_space(space)
    arch = sp.sample(random.Random(0))
    result = cli("arch", "info", _write(tmp_path / "a.json", arch.to_json()), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["valid"] is True
    assert data["space"] == space and data["resolution"] == arch.resolution
    for key, want in (("macs", sp.macs(arch)), ("params", sp.params(arch))):
        assert type(data[key]) is int and data[key] == want
    assert data["warnings"] == []


def test_info_text(cli, tmp_path):
    arch = get_space("tiny").largest()
    result = cli("arch", "info", _write(tmp_path / "a.json", arch.to_json()))
    assert result.code == 0
    assert "valid       yes" in result.out
    assert f"({get_space('tiny').macs(arch)})" in result.out
    assert result.err == ""


def _off_range(tmp_path: Path) -> Path:
    data = get_space("ofa-mbv3-w1.2").largest().to_dict()
    data["resolution"] = 236  # MIT publishes nets at 236; the w1.2 search range is 160-224
    return _write(tmp_path / "off.json", data)


def test_info_off_range_resolution_is_valid_with_a_warning(cli, tmp_path):
    result = cli("arch", "info", _off_range(tmp_path), "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["valid"] is True and data["resolution"] == 236
    assert len(data["warnings"]) == 1 and "outside the search range" in data["warnings"][0]

    text = cli("arch", "info", _off_range(tmp_path))
    assert text.code == 0
    assert "valid       yes" in text.out
    assert text.err.startswith("ofakit: warning: resolution 236")


def test_info_reads_stdin(cli, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(get_space("tiny").smallest().to_json()))
    result = cli("arch", "info", "-", "--json")
    assert result.code == 0
    assert json.loads(result.out)["valid"] is True


def test_info_matching_space_is_accepted(cli, tmp_path):
    path = _write(tmp_path / "a.json", get_space("tiny").largest().to_json())
    assert cli("arch", "info", path, "--space", "tiny").code == 0


# -- arch from-ofa ----------------------------------------------------------------------------------------------
# MIT's net.config of subnets drawn here (one per family, as MIT's two specialized-net families): the command's
# reading of files, sizes and spaces is tested on them; that real MIT configs convert is tested on MIT's published
# nets in tests/interop/test_ofa_config.py.
@pytest.fixture(scope="module")
def nets() -> dict[str, tuple[ArchConfig, dict]]:
    """name -> (the arch, {"net_config": MIT's net.config of it, "image_size": its resolution})."""
    out = {}
    for space, resolution, dropout, eps in (("ofa-mbv3-w1.0", 160, 0.1, 1e-5), ("ofa-proxyless-w1.3", 208, 0.0, 1e-3)):
        arch = dataclasses.replace(get_space(space).sample(random.Random(7)), resolution=resolution)
        config = ofa_config_from_arch(arch, dropout_rate=dropout, bn={"eps": eps, "momentum": 0.1})
        out[space] = arch, {"net_config": config, "image_size": resolution}
    return out


NETS = ["ofa-mbv3-w1.0", "ofa-proxyless-w1.3"]


def _check_round_trip(result, arch: ArchConfig) -> ArchConfig:
    assert result.code == 0, result.err
    back = ArchConfig.from_json(result.out)
    assert back.space == arch.space and back.resolution == arch.resolution
    space = get_space(arch.space)
    space.validate(back)
    assert space.key(back) == space.key(arch)  # the same network
    return back


@pytest.mark.parametrize("name", NETS)
def test_from_ofa_net_config_with_resolution(cli, tmp_path, nets, name):
    arch, entry = nets[name]
    path = _write(tmp_path / "net.config", entry["net_config"])
    _check_round_trip(cli("arch", "from-ofa", path, "--resolution", entry["image_size"]), arch)


@pytest.mark.parametrize("name", NETS)
def test_from_ofa_net_config_and_image_size(cli, tmp_path, nets, name):
    arch, entry = nets[name]
    _check_round_trip(cli("arch", "from-ofa", _write(tmp_path / "spec.json", entry)), arch)


@pytest.mark.parametrize("listed", [False, True], ids=["int", "list"])
def test_from_ofa_reads_run_config_next_to_net_config(cli, tmp_path, nets, listed):
    arch, entry = nets[NETS[0]]
    size = entry["image_size"]
    _write(tmp_path / "run.config", {"image_size": [128, 144, size] if listed else size, "dataset": "imagenet"})
    path = _write(tmp_path / "net.config", entry["net_config"])
    _check_round_trip(cli("arch", "from-ofa", path), arch)


def test_from_ofa_out_and_explicit_space(cli, tmp_path, nets):
    arch, entry = nets[NETS[0]]
    path = _write(tmp_path / "net.config", entry["net_config"])
    out = tmp_path / "arch.json"
    result = cli("arch", "from-ofa", path, "--resolution", entry["image_size"], "--space", "ofa-mbv3-w1.0",
                 "--out", out)
    assert result.code == 0 and result.out == ""
    written = ArchConfig.load(out)
    assert written.space == "ofa-mbv3-w1.0" and get_space(arch.space).key(written) == get_space(arch.space).key(arch)
    cli("arch", "from-ofa", path, "--space", "ofa-mbv3-w1.2", "--out", tmp_path / "other.json").assert_user_error(
        "net config has a 16-channel stem and a 16-channel first block; space 'ofa-mbv3-w1.2' has 24 and 24")
    assert not (tmp_path / "other.json").exists()


def test_from_ofa_without_size_uses_224_with_a_note(cli, tmp_path, nets):
    path = _write(tmp_path / "net.config", nets[NETS[0]][1]["net_config"])
    result = cli("arch", "from-ofa", path)
    assert result.code == 0
    assert ArchConfig.from_json(result.out).resolution == 224
    assert "pass --resolution" in result.err


@pytest.mark.filterwarnings("ignore:resolution 236 is outside the search range")
def test_from_ofa_off_range_size_warns(cli, tmp_path, nets):
    arch, entry = nets[NETS[0]]  # MIT publishes nets at 236, outside the search range 128-224
    result = cli("arch", "from-ofa", _write(tmp_path / "spec.json", {**entry, "image_size": 236}))
    _check_round_trip(result, dataclasses.replace(arch, resolution=236))
    assert result.err.startswith("ofakit: warning: resolution 236")


def test_from_ofa_size_of_the_wrong_type_is_an_error(cli, tmp_path, nets):
    path = _write(tmp_path / "spec.json", {"net_config": nets[NETS[0]][1]["net_config"], "image_size": "big"})
    cli("arch", "from-ofa", path).assert_user_error("image size must be an integer", "'big'")


@pytest.mark.parametrize(("data", "fragment"), [
    ([1, 2], "expected a JSON object"),
    ({"net_config": [1], "image_size": 160}, "'net_config' must be a JSON object"),
    ({"name": "ResNets", "blocks": []}, "is not supported"),
    ({"name": "MobileNetV3", "blocks": []}, "is it MIT's net.config?"),
])
def test_from_ofa_rejects_what_is_not_a_net_config(cli, tmp_path, data, fragment):
    cli("arch", "from-ofa", _write(tmp_path / "x.json", data)).assert_user_error(fragment)


@pytest.mark.parametrize(("block", "change", "space", "fragment"), [
    (3, {"drop": "kernel_size"}, None, "block 3's MBConv layer lacks kernel_size"),
    (2, {"drop": "out_channels"}, "ofa-mbv3-w1.0", "block 2's MBConv layer lacks out_channels"),
    (0, {"replace": "x"}, "ofa-mbv3-w1.0", "block 0's MBConv layer lacks out_channels"),
    (5, {"replace": [1]}, None, "block 5's MBConv layer lacks out_channels, kernel_size, expand_ratio"),
], ids=["no-kernel", "no-width", "text-layer", "list-layer"])
def test_from_ofa_a_block_without_its_fields_is_one_error(cli, tmp_path, nets, block, change, space, fragment):
    config = copy.deepcopy(nets[NETS[0]][1]["net_config"])
    layer = config["blocks"][block]
    key = "mobile_inverted_conv" if "mobile_inverted_conv" in layer else "conv"
    if "drop" in change:
        del layer[key][change["drop"]]
    else:
        layer[key] = change["replace"]
    args = ["--space", space] if space else []
    cli("arch", "from-ofa", _write(tmp_path / "net.config", config), "--resolution", "160", *args).assert_user_error(
        fragment)


def test_from_ofa_resolution_zero_is_refused_not_ignored(cli, tmp_path, nets):
    cli("arch", "from-ofa", _write(tmp_path / "spec.json", nets[NETS[0]][1]), "--resolution", "0").assert_user_error(
        "'resolution' must be a positive integer, got 0")


# -- user mistakes: one line, exit code 2 -----------------------------------------------------------------------
def test_unknown_space_suggests_a_close_match(cli):
    cli("arch", "sample", "--space", "ofa-resnet").assert_user_error(
        "unknown search space 'ofa-resnet'", "known: ", "Did you mean 'ofa-resnet50'?")


def test_illegal_kernel_size(cli, tmp_path):
    data = get_space("ofa-mbv3-w1.0").largest().to_dict()
    data["kernel_sizes"][4] = 9
    cli("arch", "info", _write(tmp_path / "k9.json", data)).assert_user_error(
        "kernel size 9 at block 4", "'ofa-mbv3-w1.0'", "choices: 3, 5, 7")


def test_malformed_json(cli, tmp_path):
    cli("arch", "info", _write(tmp_path / "bad.json", '{"space": ')).assert_user_error("bad.json: not an arch file (not JSON: ")


def test_missing_file(cli, tmp_path):
    cli("arch", "info", tmp_path / "nope.json").assert_user_error("cannot read", "nope.json")
    cli("arch", "from-ofa", tmp_path / "net.config").assert_user_error("cannot read", "net.config")


@pytest.mark.parametrize(("data", "fragment"), [
    ([1, 2], "must be a JSON object"),
    ({"space": "tiny"}, "missing key(s) 'resolution', 'depths'"),
    ({"space": "tiny", "resolution": 32, "depths": [1, 2], "depth": 3}, "unknown ArchConfig key(s) 'depth'"),
    ({"space": "tinyy", "resolution": 32, "depths": [1, 2]}, "Did you mean 'tiny'?"),
])
def test_malformed_arch(cli, tmp_path, data, fragment):
    cli("arch", "info", _write(tmp_path / "a.json", data)).assert_user_error(fragment)


def test_arch_of_another_space(cli, tmp_path):
    path = _off_range(tmp_path)  # an ofa-mbv3-w1.2 arch
    cli("arch", "info", path, "--space", "ofa-mbv3-w1.0").assert_user_error(
        "'ofa-mbv3-w1.2'", "not 'ofa-mbv3-w1.0'")


def test_from_ofa_net_config_without_blocks(cli, tmp_path):
    data = {"name": "MobileNetV3", "first_conv": {"out_channels": 16}, "blocks": []}
    cli("arch", "from-ofa", _write(tmp_path / "x.json", data), "--space", "ofa-mbv3-w1.0", "--resolution", "160") \
        .assert_user_error("blocks")
