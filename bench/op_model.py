"""Op model on Note10: fitted on MIT's Note10 table (ofa-mbv3-w1.2, 160-224 px), how close does it come to the 5
published Note10 nets the table does not cover (ofa-mbv3-w1.0 at 8/11/16/22 ms, ofa-mbv3-w1.2 at 260 px)?
Goal: every one within +-3 %.

The published figures are the nets' latency budgets in whole milliseconds (probably table sums: the 30/41/50 ms
nets the table covers sum to 29.97/39.91/49.78 ms), so an error of a few percent is partly the budget's rounding
and slack. The model is fitted on the table's entries only, never on a net. Also reported: its error on table
entries left out of the fit (whole resolutions left out in turn), and on the table sums of 300 random
ofa-mbv3-w1.2 subnets at resolutions left out of the fit.

    python -m bench.op_model [--data ../shared/data]

Data: MIT's Note10 YAML tables and ofa_specialized_nets.json from --data, else $OFAKIT_SHARED_DATA, else
../shared/data next to the repository. Prints one JSON line; exits 1 when a net is off by more than 3 %.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np

GOAL_PCT = 3.0
HELD_OUT_SUBNETS = 300


def data_dir(given: str | None) -> Path:
    """--data, else $OFAKIT_SHARED_DATA, else ../shared/data next to the repository."""
    path = Path(given or os.environ.get("OFAKIT_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared"
                / "data")
    if not path.is_dir():
        sys.exit(f"data folder {path} not found: pass --data or set OFAKIT_SHARED_DATA")
    return path


def note10_table(data: Path):
    """The Note10 table converted from MIT's YAML files in `data` (what latency_tables/ ships, rebuilt here)."""
    from ofakit.latency.mit import convert, read_sources

    folder = data / "latency" / "note10-ofa-mbv3-w1.2"
    return convert(read_sources(folder, "ofa-mbv3-w1.2"), device="note10", space="ofa-mbv3-w1.2",
                   source=str(folder))


def held_out_subnets(table, seed: int = 0) -> dict[str, float]:
    """Table sums of random subnets at resolutions left out of the fit (5 folds of every 5th resolution) against
    the model fitted on the other resolutions."""
    from ofakit.latency.estimate import LutEstimator
    from ofakit.latency.table import LatencyTable
    from ofakit.predict.op_estimator import OpModelEstimator
    from ofakit.predict.op_model import OpModel, fit_op_model
    from ofakit.space import get_space

    space = get_space("ofa-mbv3-w1.2")
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(HELD_OUT_SUBNETS)]
    truth = LutEstimator(table, space).estimate_batch(archs)
    resolutions = table.resolutions
    errors = np.empty(len(archs))
    for k in range(5):
        held = set(resolutions[k::5])
        train = LatencyTable(dict(table.meta), {r: s for r, s in table.entries.items() if r not in held})
        fitted = fit_op_model(train, resolution_range=(min(resolutions), max(resolutions)))
        model = OpModel(fitted.coef, fitted.meta)  # no table: every layer from the model
        at = [i for i, a in enumerate(archs) if a.resolution in held]
        est = OpModelEstimator(model, space).estimate_batch([archs[i] for i in at])
        errors[at] = (est / truth[at] - 1) * 100
    return {"subnets": len(archs), "mape_pct": round(float(np.abs(errors).mean()), 2),
            "max_pct": round(float(np.abs(errors).max()), 2),
            "within_3pct": round(float((np.abs(errors) <= 3).mean()) * 100, 1)}


def main() -> int:
    from ofakit.errors import LatencyLookupError
    from ofakit.latency.estimate import LutEstimator
    from ofakit.predict.op_estimator import OpModelEstimator
    from ofakit.predict.op_model import fit_op_model
    from ofakit.predict.phones import published_nets
    from ofakit.space import get_space

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the shared data folder (default: $OFAKIT_SHARED_DATA or ../shared/data)")
    args = parser.parse_args()
    data = data_dir(args.data)
    warnings.simplefilter("ignore")  # off-range resolutions (260 px) are legal here
    table = note10_table(data)
    model = fit_op_model(table, spaces=("ofa-mbv3-w1.2", "ofa-mbv3-w1.0"), resolution_range=(128, 260))
    nets = []
    for net in published_nets(data / "ofa_specialized_nets.json")["note10"]:
        space = get_space(net.arch.space)
        try:
            LutEstimator(table, space).estimate(net.arch)
            covered = True
        except LatencyLookupError:
            covered = False
        est = OpModelEstimator(model, space).estimate(net.arch)
        nets.append({"name": net.name, "space": net.arch.space, "resolution": net.arch.resolution,
                     "covered_by_table": covered, "published_ms": net.ms, "estimate_ms": round(est, 3),
                     "error_pct": round((est / net.ms - 1) * 100, 2)})
    uncovered = [n for n in nets if not n["covered_by_table"]]
    worst = max(abs(n["error_pct"]) for n in uncovered)
    print(json.dumps({
        "bench": "op_model", "device": "note10", "table": "note10 ofa-mbv3-w1.2, 160-224 px",
        "uncovered_nets": uncovered, "max_abs_error_pct": worst,
        "within_goal": sum(abs(n["error_pct"]) <= GOAL_PCT for n in uncovered), "of": len(uncovered),
        "goal_pct": GOAL_PCT, "covered_nets": [n for n in nets if n["covered_by_table"]],
        "held_out_entries": model.meta.held_out, "held_out_resolution_subnets": held_out_subnets(table),
        "unidentified_features": list(model.meta.unidentified),
        "note": "published figures are latency budgets in whole ms (probably table sums)",
    }))
    return 0 if worst <= GOAL_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
