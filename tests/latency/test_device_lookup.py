"""A device named directly is read from its own file; aliases and unknown names go through the whole registry."""
from __future__ import annotations

import pytest

from ofakit.errors import UnknownNameError
from ofakit.latency import devices as devices_module
from ofakit.latency.devices import get_device, load_device, reload_devices


@pytest.fixture
def reads(monkeypatch):
    """The device files read, in order."""
    seen = []

    def counting(path):
        seen.append(path.stem)
        return load_device(path)

    monkeypatch.setattr(devices_module, "load_device", counting)
    reload_devices()
    yield seen
    reload_devices()


def test_a_name_reads_one_file(reads):
    device = get_device("pixel1")
    assert reads == ["pixel1"] and device.name == "pixel1"
    assert device == devices_module.load_devices(devices_module.device_dirs()).get("pixel1")  # as the registry has it


def test_an_alias_loads_the_registry(reads):
    assert get_device("pixel").name == "pixel1"
    assert len(reads) == len(devices_module.devices()) > 1


def test_an_unknown_name_still_lists_the_known_devices(reads):
    with pytest.raises(UnknownNameError, match="unknown device 'pixle1'.*Did you mean 'pixel1'"):
        get_device("pixle1")


def test_a_device_folder_from_the_environment_is_looked_in(tmp_path, monkeypatch, reads):
    (tmp_path / "my-board.yaml").write_text("name: my-board\nkind: cpu\nbackend: {name: onnxruntime}\n")
    monkeypatch.setenv(devices_module.DEVICES_PATH_ENV, str(tmp_path))
    assert get_device("my-board").kind == "cpu" and reads == ["my-board"]
