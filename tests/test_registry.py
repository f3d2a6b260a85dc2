"""Registry: duplicates refused, unknown names explained with the known names and a close match, aliases."""
from __future__ import annotations

import re

import pytest

from ofakit.errors import OfakitError, UnknownNameError
from ofakit.registry import Registry
from ofakit.space import SPACES, get_space


@pytest.fixture
def backends() -> Registry[str]:
    reg: Registry[str] = Registry("backend")
    reg.add("tensorrt", "TRT", aliases=("trt",))
    reg.add("onnxruntime", "ORT", aliases=("ort", "onnx"))
    reg.add("coreml", "CML")
    return reg


def test_get_by_name_and_alias(backends):
    assert backends.get("tensorrt") == "TRT"
    assert backends.get("trt") == "TRT"
    assert backends.get("onnx") == "ORT"
    assert backends.canonical("ort") == "onnxruntime"
    assert backends.aliases_of("onnxruntime") == ["onnx", "ort"]
    assert backends.aliases_of("coreml") == []


def test_names_leave_out_aliases(backends):
    assert backends.names() == ["coreml", "onnxruntime", "tensorrt"]
    assert list(backends) == backends.names()
    assert len(backends) == 3
    assert "trt" in backends and "tensorrt" in backends and "tensorrtt" not in backends


def test_register_decorator_returns_the_object():
    reg: Registry[object] = Registry("device")

    @reg.register("pixel", aliases=("pixel1",))
    def pixel() -> str:
        return "pixel"

    assert reg.get("pixel1") is pixel


@pytest.mark.parametrize(("name", "aliases", "taken"), [
    ("tensorrt", (), "tensorrt"),      # a name again
    ("trt", (), "trt"),                # a name that is an alias
    ("tflite", ("coreml",), "coreml"),  # an alias that is a name
    ("tflite", ("ort",), "ort"),        # an alias that is an alias
])
def test_duplicate_registration_is_refused(backends, name, aliases, taken):
    with pytest.raises(ValueError, match=f"backend '{taken}' is already registered"):
        backends.add(name, "X", aliases=aliases)
    assert "tflite" not in backends  # nothing half-registered
    assert backends.get("tensorrt") == "TRT"


def test_duplicate_registration_by_decorator_is_refused(backends):
    with pytest.raises(ValueError, match="backend 'coreml' is already registered"):
        backends.register("coreml")(object())


def test_unknown_name_lists_known_names_and_suggests_a_close_match(backends):
    message = "unknown backend 'tensorrtt'; known: coreml, onnxruntime, tensorrt. Did you mean 'tensorrt'?"
    with pytest.raises(UnknownNameError, match=re.escape(message)):
        backends.get("tensorrtt")


def test_a_close_alias_suggests_its_registered_name(backends):
    with pytest.raises(UnknownNameError, match=re.escape("Did you mean 'onnxruntime'?")):
        backends.get("onnxx")


def test_no_suggestion_without_a_close_match(backends):
    with pytest.raises(UnknownNameError) as info:
        backends.get("qnn")
    assert str(info.value) == "unknown backend 'qnn'; known: coreml, onnxruntime, tensorrt."


def test_unknown_name_error_is_a_plain_one_line_lookup_error(backends):
    with pytest.raises(LookupError) as info:
        backends.get("nope")
    assert isinstance(info.value, OfakitError)
    assert str(info.value).startswith("unknown backend 'nope'")  # no quotes around it, unlike KeyError


def test_unknown_space_names_every_space_and_the_close_one():
    with pytest.raises(UnknownNameError, match=re.escape(f"known: {', '.join(SPACES.names())}.")) as info:
        get_space("ofa-resnet-50")
    assert str(info.value).startswith("unknown search space 'ofa-resnet-50';")
    assert str(info.value).endswith("Did you mean 'ofa-resnet50'?")
