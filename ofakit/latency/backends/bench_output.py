"""Read the timings out of what a benchmark tool prints on a remote device.

Three tools are read: ONNX Runtime's `onnxruntime_perf_test` (mean in ms; min, max and the P50 ... P999 latencies
in seconds), TensorFlow Lite's `benchmark_model` (one `count=... min=... max=... avg=... std=...` line per phase, in
microseconds, with `p5=... median=... p95=...` in recent versions), and ofakit's own timer (`ort_timer.py`: one JSON
line with the milliseconds of every call). Each parser returns a `BenchReport`, whose `samples(n)` is what a
`Runner.time(n)` returns.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ofakit.errors import BenchOutputError

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
TIMER_KEY = "ofakit_timer"  # the key of the JSON line ort_timer.py prints


@dataclass(frozen=True)
class BenchReport:
    """Milliseconds reported by one run of a benchmark tool.

    Attributes:
        mean_ms: mean over the timed calls.
        count: timed calls, when the tool says.
        quantiles: (fraction, ms) points of the distribution, sorted by fraction (0: the minimum, 1: the maximum);
            empty when the tool reports no percentile.
        calls_ms: every call, when the tool prints them (ofakit's timer); else empty.
        runtime_version: the runtime's version, when the tool prints it.
    """

    mean_ms: float
    count: int | None = None
    quantiles: tuple[tuple[float, float], ...] = ()
    calls_ms: tuple[float, ...] = ()
    runtime_version: str = ""

    def samples(self, n: int) -> list[float]:
        """`n` per-call milliseconds: the calls themselves when the tool printed them, else an approximation.

        The approximation evaluates the reported distribution at the midpoints (i + 0.5) / n of `n` equal shares,
        interpolating linearly between the tool's percentiles; it needs a percentile inside (0, 1), such as a median
        (a minimum and a maximum alone would put the median halfway to a single slow outlier). Without one, it is
        `n` copies of the reported mean, so a statistic taken over them (p10, median) is the mean.
        """
        if self.calls_ms:
            return list(self.calls_ms[-n:]) if len(self.calls_ms) >= n else _repeat(self.calls_ms, n)
        if not any(0.0 < q < 1.0 for q, _ in self.quantiles):
            return [self.mean_ms] * n
        return [_quantile(self.quantiles, (i + 0.5) / n) for i in range(n)]


def _repeat(values: tuple[float, ...], n: int) -> list[float]:
    return [values[i % len(values)] for i in range(n)]


def _quantile(points: tuple[tuple[float, float], ...], q: float) -> float:
    """Piecewise-linear quantile function through `points`, flat beyond the first and the last point."""
    if q <= points[0][0]:
        return points[0][1]
    for (q0, v0), (q1, v1) in zip(points, points[1:]):
        if q <= q1:
            return v0 + (v1 - v0) * (q - q0) / (q1 - q0) if q1 > q0 else v1
    return points[-1][1]


def tail(text: str, lines: int = 8) -> str:
    """The last non-empty lines of a tool's output, on one line (for error messages)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def _last(pattern: str, text: str) -> float | None:
    found = re.findall(pattern, text)
    return float(found[-1]) if found else None


# -- onnxruntime_perf_test --------------------------------------------------------------------------------------
# percentile lines: "Min Latency: 0.0529422 s", "P50 Latency: 0.0603562 s", ... (seconds)
_ORT_QUANTILES = (("Min", 0.0), ("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999),
                  ("Max", 1.0))


def parse_onnxruntime_perf_test(text: str) -> BenchReport:
    """Read `onnxruntime_perf_test -m times` output.

    The mean comes from `Average inference time cost: X ms` (`... cost total: X ms` in recent versions), the count
    from `Total inference requests: N`, the distribution from the `Min/P50/.../Max Latency: X s` lines.
    """
    mean = _last(rf"Average inference time cost(?: total)?:\s*{_NUMBER}\s*ms", text)
    if mean is None:
        raise BenchOutputError("no 'Average inference time cost: ... ms' line in the output of "
                               f"onnxruntime_perf_test; its last lines: {tail(text)}")
    count = _last(rf"Total inference requests:\s*{_NUMBER}", text)
    points = []
    for label, q in _ORT_QUANTILES:
        seconds = _last(rf"{label} Latency:\s*{_NUMBER}\s*s\b", text)
        if seconds is not None:
            points.append((q, seconds * 1e3))
    return BenchReport(mean_ms=mean, count=None if count is None else int(count), quantiles=tuple(points))


# -- TFLite benchmark_model -------------------------------------------------------------------------------------
# a phase's statistics, in microseconds: "count=50 first=1234 curr=1200 min=1100 max=1500 avg=1250 std=80
# p5=1120 median=1240 p95=1400" (p5/median/p95 in recent versions)
_TFLITE_STAT = re.compile(r"count=(\d+)((?:\s+\w+=[-+.\deE]+)+)")
_TFLITE_QUANTILES = (("min", 0.0), ("p5", 0.05), ("median", 0.5), ("p95", 0.95), ("max", 1.0))


def parse_tflite_benchmark(text: str) -> BenchReport:
    """Read TensorFlow Lite `benchmark_model` output.

    The tool prints one statistics line per phase (warm-up, then the timed runs); the last one is the timed runs'.
    Its `avg` is the mean; `min`, `p5`, `median`, `p95` and `max` give the distribution.
    """
    stats = _TFLITE_STAT.findall(text)
    if not stats:
        raise BenchOutputError("no 'count=... avg=...' statistics line in the output of benchmark_model; its last "
                               f"lines: {tail(text)}")
    count, fields = stats[-1]
    values = dict(re.findall(rf"(\w+)={_NUMBER}", fields))
    if "avg" not in values:
        raise BenchOutputError(f"benchmark_model's statistics line has no 'avg': count={count}{fields}")
    points = tuple((q, float(values[k]) / 1e3) for k, q in _TFLITE_QUANTILES if k in values)
    return BenchReport(mean_ms=float(values["avg"]) / 1e3, count=int(count), quantiles=points)


# -- ofakit's timer ---------------------------------------------------------------------------------------------
def parse_ofakit_timer(text: str) -> BenchReport:
    """Read the JSON line `{"ofakit_timer": 1, "runtime_version": ..., "ms": [...]}` that `ort_timer.py` prints."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and TIMER_KEY in line:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                break
            ms = data.get("ms")
            # (not JSON's true, Infinity or NaN)
            if isinstance(ms, list) and ms and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) and v > 0 for v in ms):
                calls = tuple(float(v) for v in ms)
                return BenchReport(mean_ms=sum(calls) / len(calls), count=len(calls),
                                   quantiles=(), calls_ms=calls, runtime_version=str(data.get("runtime_version", "")))
            break
    raise BenchOutputError(f"no '{{\"{TIMER_KEY}\": ...}}' line with positive 'ms' in the output of ofakit's "
                           f"timer; its last lines: {tail(text)}")
