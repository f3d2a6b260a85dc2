"""Latency: devices, per-layer tables, profiling backends, end-to-end measurement and the LUT estimator (cost on a
device). Learned latency models and the registry of every estimator kind live in `ofakit.predict`.

Importing this package is cheap (no torch, no runtime): backends import their runtime when they load a model.
"""
from ofakit.latency.devices import DeviceSpec, get_device
from ofakit.latency.estimate import Estimator, LutEstimator
from ofakit.latency.table import LatencyTable, find_table, layer_key

__all__ = ["DeviceSpec", "LatencyTable", "Estimator", "LutEstimator", "find_table", "get_device", "layer_key"]
