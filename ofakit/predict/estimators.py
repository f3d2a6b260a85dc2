"""The latency estimators of a (device, space), by name: the one place that knows every kind of latency model.

`estimator_for(device, space, model=...)` returns an `ofakit.latency.estimate.Estimator`:
- "lut": the sum of the device's table over the subnet's layers (`ofakit.latency.estimate.LutEstimator`);
- "predictor": the learned predictor fitted for (device, space) on subnets measured end to end
  (`ofakit.predict.latency`, made by `ofakit latency fit`);
- "auto": the predictor when one is fitted, else the LUT sum.
"""
from __future__ import annotations

from collections.abc import Callable

from ofakit.latency.estimate import Estimator, LutEstimator
from ofakit.latency.table import find_table
from ofakit.predict.latency import load_predictor
from ofakit.registry import Registry


def _lut(device: str, space: str) -> Estimator:
    return LutEstimator(find_table(device, space))


def _predictor(device: str, space: str) -> Estimator:
    return load_predictor(device, space)


def _auto(device: str, space: str) -> Estimator:
    return load_predictor(device, space, fallback=True)


ESTIMATORS: Registry[Callable[[str, str], Estimator]] = Registry("latency model")
ESTIMATORS.add("lut", _lut)  # the sum of the table's layers
ESTIMATORS.add("predictor", _predictor)  # the learned predictor fitted for (device, space): ofakit latency fit
ESTIMATORS.add("auto", _auto)  # the predictor when one is fitted for (device, space), else the LUT sum


def estimator_for(device: str, space: str, *, model: str = "lut") -> Estimator:
    """The latency estimator of `device` (name or alias) for `space`: `model` is one of ESTIMATORS.

    Raises UnknownNameError for an unknown model, LatencyLookupError (naming the command that makes what is
    missing) when the device has no table for the space or, for "predictor", no fitted predictor.
    """
    return ESTIMATORS.get(model)(device, space)


__all__ = ["ESTIMATORS", "estimator_for"]
