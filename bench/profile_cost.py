"""Profile cost: wall time of `ofakit profile` for a full table of one space at several resolutions, from scratch.

Goal (latency issue): a full table for one space at 5 resolutions in <= 10 minutes on the development CPU. Profiles
into a temporary file (the committed tables are not touched) with the device's settings and the default repetitions,
and prints one JSON line: seconds, layers, seconds per layer, the table's size, the machine and its load.

    python -m bench.profile_cost
    python -m bench.profile_cost --space ofa-mbv3-cifar --resolutions 24 28 32
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ofakit.latency.devices import get_device
from ofakit.latency.profile import ProfileConfig, profile
from ofakit.space import get_space


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu-ort")
    p.add_argument("--space", default="ofa-mbv3-w1.0")
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 152, 176, 200, 224])
    args = p.parse_args(argv)
    device, space = get_device(args.device), get_space(args.space)
    cfg = ProfileConfig(resolutions=tuple(args.resolutions))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "table.json"
        start = time.perf_counter()
        table = profile(device, space, out, cfg,
                        on_progress=lambda q: q.done % 50 == 0 and print(f"{q.done}/{q.total}", file=sys.stderr))
        seconds = time.perf_counter() - start
        size = out.stat().st_size
    env = table.meta["environment"]
    print(json.dumps({
        "bench": "profile_cost", "date": datetime.date.today().isoformat(), "device": device.name,
        "space": space.name, "resolutions": list(cfg.resolutions), "layers": len(table),
        "seconds": round(seconds, 1), "seconds_per_layer": round(seconds / len(table), 3),
        "goal_seconds": 600, "table_bytes": size,
        "config": {"warmup": cfg.warmup, "reps": cfg.reps, "flush_every": cfg.flush_every},
        "machine": {"host": env.get("host"), "cpu_count": env.get("cpu_count"), "runtime": env.get("runtime"),
                    "runtime_version": env.get("runtime_version"), "threads": env.get("threads")},
        "load_average_1min": {"before": round(load_before, 2), "rounds": env.get("load_average_1min"),
                              "after": round(os.getloadavg()[0], 2)},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
