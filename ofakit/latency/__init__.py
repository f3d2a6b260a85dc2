"""Latency: devices, per-layer tables, profiling backends and estimators (cost on a device).

Importing this package is cheap (no torch, no runtime): backends import their runtime when they load a model.
"""
from ofakit.latency.devices import DeviceSpec, get_device
from ofakit.latency.estimate import LutEstimator, estimator_for
from ofakit.latency.table import LatencyTable, find_table, layer_key

__all__ = ["DeviceSpec", "LatencyTable", "LutEstimator", "estimator_for", "find_table", "get_device", "layer_key"]
