"""MIT once-for-all net.config <-> ArchConfig: OFA's 50 published specialized nets round-trip exactly, their MACs
match the published figures (counted from the arch and from the extracted network), and the newer net.config
format of MIT's later releases (`ResidualBlock` / `conv`) reads too."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ofakit.arch import ArchConfig
from ofakit.errors import ArchError
from ofakit.interop.ofa_config import arch_from_ofa_config, guess_space, ofa_config_from_arch
from ofakit.space import get_space

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ofa"
# MIT publishes some nets at resolutions outside the search range (228-260); converting them warns, as it should.
off_range_ok = pytest.mark.filterwarnings("ignore:resolution .* is outside the search range")


@pytest.fixture(scope="module")
def specialized(shared_data: Path) -> dict[str, dict]:
    path = shared_data / "ofa_specialized_nets.json"
    if not path.is_file():
        pytest.skip(f"OFA's specialized nets not found at {path}")
    return json.loads(path.read_text())


def _net(nets: dict[str, dict], prefix: str) -> dict:
    (entry,) = [v for k, v in nets.items() if k.startswith(prefix)]
    return entry


# -- OFA's 50 specialized nets --------------------------------------------------------------------------------
@off_range_ok
def test_every_specialized_net_round_trips(specialized):
    assert len(specialized) == 50
    failures = []
    for name, entry in sorted(specialized.items()):
        config = entry["net_config"]
        arch = arch_from_ofa_config(config, entry["image_size"])
        family = "ofa-mbv3-w" if config["name"] == "MobileNetV3" else "ofa-proxyless-w"
        assert arch.space.startswith(family), f"{name}: guessed space {arch.space!r}"
        assert arch.resolution == entry["image_size"]
        assert ArchConfig.from_json(arch.to_json()) == arch
        back = ofa_config_from_arch(arch, dropout_rate=config["classifier"]["dropout_rate"], bn=config["bn"])
        if back != config:
            failures.append(name)
    assert not failures, f"{len(failures)} net(s) do not round-trip: {failures}"


# Three of them written out as ArchConfig dicts (checked against MIT's configs below), so that their MACs are
# tested without ../shared: MIT publishes them as 389, 482 and 595 M MACs.
PUBLISHED = {
    "flops-389M_": (389, {"space": "ofa-mbv3-w1.2", "resolution": 224, "depths": [2, 3, 3, 4, 4],
                          "kernel_sizes": [3, 3, 3, 3, 5, 5, 3, 3, 5, 5, 3, 3, 5, 5, 3, 3, 3, 3, 7, 3],
                          "expand_ratios": [3, 3, 3, 3, 3, 6, 3, 3, 4, 4, 3, 3, 6, 4, 4, 4, 6, 6, 6, 3]}),
    "flops-482M_": (482, {"space": "ofa-mbv3-w1.2", "resolution": 224, "depths": [3, 4, 4, 4, 4],
                          "kernel_sizes": [5, 3, 3, 3, 5, 3, 5, 3, 5, 5, 3, 3, 5, 7, 3, 5, 7, 3, 3, 3],
                          "expand_ratios": [3, 3, 3, 3, 4, 4, 4, 3, 4, 6, 3, 3, 6, 6, 6, 4, 6, 6, 6, 3]}),
    "flops-595M_": (595, {"space": "ofa-mbv3-w1.2", "resolution": 236, "depths": [3, 4, 4, 4, 4],
                          "kernel_sizes": [3, 5, 3, 3, 5, 5, 3, 5, 7, 5, 3, 5, 3, 5, 7, 3, 3, 3, 5, 3],
                          "expand_ratios": [3, 4, 3, 3, 4, 4, 6, 3, 6, 6, 3, 4, 6, 6, 6, 4, 6, 6, 6, 3]}),
}


@off_range_ok
def test_published_archs_written_here_match_mit_configs(specialized):
    for prefix, (_, data) in PUBLISHED.items():
        entry = _net(specialized, prefix)
        arch = arch_from_ofa_config(entry["net_config"], entry["image_size"])
        assert arch.to_dict() == data, prefix


@pytest.mark.parametrize("prefix", PUBLISHED)
@off_range_ok
def test_published_macs(prefix):
    mmacs, data = PUBLISHED[prefix]
    arch = ArchConfig.from_dict(data)
    assert round(get_space(arch.space).macs(arch) / 1e6) == mmacs


@off_range_ok
def test_published_macs_of_the_extracted_networks():
    """FlopCounterMode on the extracted network agrees; on the meta device only shapes are computed, so it is quick."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from ofakit.supernet import build_supernet, extract_subnet

    with torch.device("meta"):
        supernet = build_supernet("ofa-mbv3-w1.2")
        for mmacs, data in PUBLISHED.values():
            arch = ArchConfig.from_dict(data)
            net = extract_subnet(supernet, arch).eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                net(torch.zeros(1, 3, arch.resolution, arch.resolution))
            macs = counter.get_total_flops() // 2
            assert round(macs / 1e6) == mmacs
            assert macs == get_space(arch.space).macs(arch)


# -- the newer net.config format ------------------------------------------------------------------------------
def _mbconv_references() -> list[Path]:
    paths = sorted(FIXTURES.glob("*.reference.json"))
    return [p for p in paths if json.loads(p.read_text())["class"] in ("OFAMobileNetV3", "OFAProxylessNASNets")]


@pytest.mark.parametrize("path", _mbconv_references(), ids=lambda p: p.name.removesuffix(".reference.json"))
def test_newer_mit_format_converts(path):
    reference = json.loads(path.read_text())
    family = "ofa-mbv3" if reference["class"] == "OFAMobileNetV3" else "ofa-proxyless"
    expected_space = f"{family}-w{reference['constructor']['width_mult']}"
    for subnet in reference["subnets"]:
        config, mit = subnet["net_config"], subnet["mit_args"]
        assert {b["name"] for b in config["blocks"]} == {"ResidualBlock"}
        assert guess_space(config) == expected_space
        arch = arch_from_ofa_config(config, 224)
        space = get_space(arch.space)
        assert arch.space == expected_space
        # MIT gives a depth for every stage, even the one-block last stage of ProxylessNAS; it runs what fits.
        assert list(arch.depths) == [min(d, len(slots)) for d, slots in zip(mit["d"], space.stage_slots)]
        slots = space.active_slots(arch)
        assert [arch.kernel_sizes[s] for s in slots] == [mit["ks"][s] for s in slots]
        assert [arch.expand_ratios[s] for s in slots] == [mit["e"][s] for s in slots]
        # and written back in the 2020 format, every block keeps its layer
        back = ofa_config_from_arch(arch, bn=config["bn"])
        assert len(back["blocks"]) == len(config["blocks"])
        for old, new in zip(back["blocks"], config["blocks"]):
            for field in ("in_channels", "out_channels", "kernel_size", "stride", "expand_ratio", "mid_channels",
                          "act_func", "use_se"):
                assert old["mobile_inverted_conv"][field] == new["conv"][field], field
            assert (old["shortcut"] is None) == (new["shortcut"] is None)


def test_a_block_without_its_layer_is_refused():
    config = json.loads(_mbconv_references()[0].read_text())["subnets"][0]["net_config"]
    space = guess_space(config)
    empty = {"name": "ResidualBlock", "shortcut": None}
    with pytest.raises(ArchError, match=r"lacks first_conv.out_channels or blocks\[0\]; is it MIT's net.config\?"):
        arch_from_ofa_config({**config, "blocks": [empty, *config["blocks"][1:]]}, 224)
    with pytest.raises(ArchError, match=r"lacks 'blocks' or 'first_conv'; is it MIT's net.config\?"):
        arch_from_ofa_config({**config, "blocks": [*config["blocks"][:2], empty]}, 224, space=space)


# -- import cost ----------------------------------------------------------------------------------------------
def test_importing_the_arch_layers_does_not_import_torch():
    code = ("import sys, ofakit, ofakit.space, ofakit.arch, ofakit.interop.ofa_config; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"importing ofakit pulled in torch: {result.stdout[:300]}"
