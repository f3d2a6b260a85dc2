"""`ofakit profile --device D --space S [--resolutions R ...] [--out PATH]`: measure a device's latency table."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ofakit.io import check_output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ofakit.latency.profile import ProfileConfig

    d = ProfileConfig()
    p = sub.add_parser("profile", help="time every layer of a space on a device into a latency table",
                       description="Time every distinct layer of a search space on a device and write a latency "
                                   "table. Resumable: rerun the same command and only missing layers are measured.")
    p.add_argument("--device", required=True, help="device name or alias (see `ofakit devices`)")
    p.add_argument("--space", required=True, help="search space (see `ofakit spaces`)")
    p.add_argument("--resolutions", type=int, nargs="+", metavar="R",
                   help="input resolutions to cover (default: every resolution of the space)")
    p.add_argument("--out", type=Path, help="table file (default: latency_tables/<device>_<space>.json)")
    p.add_argument("--reps", type=int, default=d.reps, help="timed calls per layer (default %(default)s)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed calls per layer (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ofakit.errors import ConfigError
    from ofakit.latency.devices import get_device
    from ofakit.latency.profile import ProfileConfig, profile
    from ofakit.latency.table import table_filename
    from ofakit.space import get_space

    device = get_device(args.device)
    space = get_space(args.space)
    if args.reps < 1 or args.warmup < 0:
        raise ConfigError(f"--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}")
    resolutions = tuple(dict.fromkeys(args.resolutions or space.resolutions))
    off = [r for r in resolutions if r not in space.resolutions]
    if off:
        print(f"ofakit: warning: resolution(s) {', '.join(map(str, off))} are outside the search range of space "
              f"{space.name!r}; profiling them anyway", file=sys.stderr)
    out = check_output_file(args.out or Path("latency_tables") / table_filename(device.name, space.name),
                            "the latency table")
    cfg = ProfileConfig(resolutions=resolutions, warmup=args.warmup, reps=args.reps)
    started = time.perf_counter()
    counts: list[int] = []
    show = not args.no_progress and sys.stderr.isatty()
    if show:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       TextColumn("{task.fields[last]}"), transient=False)
        with bar:
            task = bar.add_task(f"{device.name} {space.name}", total=None, last="")
            profile(device, space, out, cfg,
                    on_start=lambda n, have: (counts.extend((n, have)), bar.update(task, total=n)),
                    on_progress=lambda p: bar.update(task, completed=p.done,
                                                     last=f"{p.resolution} {p.key.split('/')[0]} {p.ms:.3f} ms"))
    else:
        def log(p) -> None:  # noqa: ANN001
            if p.done == p.total or p.done % 25 == 0:
                rate = (time.perf_counter() - started) / p.done
                print(f"ofakit: profile: {p.done}/{p.total} layers, ETA {rate * (p.total - p.done):.0f} s",
                      file=sys.stderr)

        profile(device, space, out, cfg, on_start=lambda n, have: counts.extend((n, have)), on_progress=log)
    measured, stored = counts or (0, 0)
    print(f"wrote {out}: {measured} layer(s) measured, {stored} already stored, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0
