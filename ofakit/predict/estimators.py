"""The latency estimators of a (device, space), by name: the one place that knows every kind of latency model.

`estimator_for(device, space, model=...)` returns an `ofakit.latency.estimate.Estimator`:
- "lut": the sum of the device's table over the subnet's layers (`ofakit.latency.estimate.LutEstimator`);
- "predictor": the learned predictor fitted for (device, space) on subnets measured end to end
  (`ofakit.predict.latency`, made by `ofakit latency fit`);
- "op-model": the op model fitted on the device's table, for layers the table lacks (`ofakit.predict.op_estimator`);
- "calibrated": an op model times a factor calibrated on the device's published nets (`ofakit.predict.phones`);
- "structural": a model of the architecture's structure fitted on subnets measured on the device, no table
  (`ofakit.predict.structural`: the GPUs of HELP's measurements);
- "adapted": a device's model fitted on a few measured subnets over other devices' models (`ofakit.predict.adapt`,
  made by `ofakit latency adapt`);
- "auto": the predictor when one is fitted, else the LUT sum; for a device with no table of the space, its adapted
  model, structural model, op model or calibration (the first it has).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ofakit.errors import LatencyLookupError
from ofakit.registry import Registry

if TYPE_CHECKING:
    from ofakit.latency.estimate import Estimator

# Each factory imports its model's module when it runs: a LUT search pays for the table code only, not for the
# adapted, structural and op models' modules (and the measuring code those pull in).


def _lut(device: str, space: str) -> Estimator:
    from ofakit.io import file_version
    from ofakit.latency.devices import get_device
    from ofakit.latency.table import table_path

    path = table_path(device, space)  # a rewritten table (a new file version) is read again
    return _lut_of(path, file_version(path), get_device(device).name, space)


@lru_cache(maxsize=8)
def _lut_of(path: Path, version: tuple[str, int, int, int], device: str, space: str) -> Estimator:
    """The table's estimator, kept for the process: a second search on the same table reads and sums it again
    neither (its block sums, built on first use, stay with it: ~14 ms of each search's set-up on Note10's table)."""
    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.table import load_table_for

    return LutEstimator(load_table_for(path, device, space))


def _predictor(device: str, space: str) -> Estimator:
    from ofakit.predict.latency import load_predictor

    return load_predictor(device, space)


def _op_model(device: str, space: str) -> Estimator:
    from ofakit.predict.op_estimator import load_op_model

    return load_op_model(device, space)


def _calibrated(device: str, space: str) -> Estimator:
    from ofakit.predict.phones import load_phone_model

    return load_phone_model(device, space)


def _structural(device: str, space: str) -> Estimator:
    from ofakit.predict.structural import load_structural

    return load_structural(device, space)


def _auto(device: str, space: str) -> Estimator:
    from ofakit.predict.latency import load_predictor

    try:
        return load_predictor(device, space, fallback=True)
    except LatencyLookupError:
        from ofakit.latency.devices import get_device
        from ofakit.latency.table import available_tables
        from ofakit.predict.adapt import adapted_file
        from ofakit.predict.phones import table_free_estimator
        from ofakit.predict.structural import model_file

        spec = get_device(device)
        if space in available_tables(spec.name):
            raise
        if adapted_file(spec.name, spec.source):
            return _adapted(device, space)
        if model_file(spec.name):
            return _structural(device, space)
        model = table_free_estimator(device, space)
        if model is None:
            raise
        return model


def _adapted(device: str, space: str) -> Estimator:
    from ofakit.predict.adapt import load_adapted

    return load_adapted(device, space, _auto)  # its sources as `auto` finds them


ESTIMATORS: Registry[Callable[[str, str], Estimator]] = Registry("latency model")
ESTIMATORS.add("lut", _lut)  # the sum of the table's layers
ESTIMATORS.add("predictor", _predictor)  # the learned predictor fitted for (device, space): ofakit latency fit
ESTIMATORS.add("op-model", _op_model)  # the op model fitted on the device's table: ofakit.predict.op_model
ESTIMATORS.add("calibrated", _calibrated)  # an op model times a factor fitted on the device's published nets
ESTIMATORS.add("structural", _structural)  # a structural model fitted on the device's measured subnets
ESTIMATORS.add("adapted", _adapted)  # fitted on a few measured subnets over other devices' models: latency adapt
ESTIMATORS.add("auto", _auto)  # predictor, else LUT sum; with no table: adapted, structural, op model, calibration


def estimator_for(device: str, space: str, *, model: str = "lut") -> Estimator:
    """The latency estimator of `device` (name or alias) for `space`: `model` is one of ESTIMATORS.

    Raises UnknownNameError for an unknown model, LatencyLookupError (naming the command that makes what is
    missing) when the device has no table for the space or, for "predictor", no fitted predictor.
    """
    return ESTIMATORS.get(model)(device, space)


__all__ = ["ESTIMATORS", "estimator_for"]
