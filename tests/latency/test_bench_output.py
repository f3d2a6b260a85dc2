"""Benchmark tool output: the parsers on recorded outputs (tests/fixtures/bench) and the per-call approximation."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from ofakit.errors import BenchOutputError
from ofakit.latency.backends.bench_output import (
    BenchReport, parse_ofakit_timer, parse_onnxruntime_perf_test, parse_tflite_benchmark,
)

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "bench"


def _read(name: str) -> str:
    return (BENCH / name).read_text()


def _flat(points):
    return [v for point in points for v in point]


def test_onnxruntime_perf_test_with_percentiles():
    r = parse_onnxruntime_perf_test(_read("onnxruntime_perf_test_pixel7.txt"))
    assert r.mean_ms == pytest.approx(13.16428) and r.count == 50
    assert _flat(r.quantiles) == pytest.approx(_flat(((0.0, 12.7315), (0.5, 13.0876), (0.9, 13.6511),
                                                      (0.95, 14.2208), (0.99, 16.1042), (0.999, 16.1042),
                                                      (1.0, 16.1042))))


def test_onnxruntime_perf_test_mean_only():
    r = parse_onnxruntime_perf_test(_read("onnxruntime_perf_test_v1.txt"))
    assert (r.mean_ms, r.count, r.quantiles) == (pytest.approx(19.2058), 20, ())
    assert r.samples(4) == [pytest.approx(19.2058)] * 4


def test_tflite_benchmark_reads_the_timed_phase_not_the_warmup():
    r = parse_tflite_benchmark(_read("tflite_benchmark_model_pixel.txt"))
    assert r.count == 50 and r.mean_ms == pytest.approx(15.9356)
    assert _flat(r.quantiles) == pytest.approx(_flat(((0.0, 15.420), (0.05, 15.502), (0.5, 15.788),
                                                      (0.95, 17.240), (1.0, 19.873))))


def test_tflite_benchmark_without_percentiles():
    r = parse_tflite_benchmark(_read("tflite_benchmark_model_2019.txt"))
    assert (r.count, r.mean_ms) == (20, pytest.approx(41.6024))
    assert _flat(r.quantiles) == pytest.approx([0.0, 40.987, 1.0, 44.311])
    # min and max alone are no distribution: the samples are the mean, not the midpoint of min and max
    assert r.samples(3) == [pytest.approx(41.6024)] * 3


def test_ofakit_timer_reports_every_call():
    text = "some warning on stderr\n" + json.dumps({"ofakit_timer": 1, "runtime_version": "1.32.0",
                                                    "ms": [1.5, 1.25, 2.0]})
    r = parse_ofakit_timer(text)
    assert r.calls_ms == (1.5, 1.25, 2.0) and r.runtime_version == "1.32.0" and r.count == 3
    assert r.samples(3) == [1.5, 1.25, 2.0] and r.samples(2) == [1.25, 2.0]


def test_samples_spread_over_the_reported_percentiles():
    r = parse_onnxruntime_perf_test(_read("onnxruntime_perf_test_pixel7.txt"))
    s = r.samples(40)
    assert len(s) == 40 and s == sorted(s)
    assert 12.7315 <= min(s) and max(s) <= 16.1042
    assert statistics.median(s) == pytest.approx(13.0876, abs=0.05)
    # the 10th percentile lies between the minimum and the median, a tenth of the way as interpolated
    assert s[3] == pytest.approx(12.7315 + (13.0876 - 12.7315) * (3.5 / 40) / 0.5)


def test_report_samples_repeat_short_call_lists():
    assert BenchReport(mean_ms=2.0, calls_ms=(1.0, 3.0)).samples(3) == [1.0, 3.0, 1.0]


@pytest.mark.parametrize(("parse", "text", "match"), [
    (parse_onnxruntime_perf_test, "Session creation time cost: 0.1 s\nSegmentation fault",
     r"no 'Average inference time cost: \.\.\. ms' line .* its last lines: Session creation .* \| Segmentation"),
    (parse_tflite_benchmark, "ERROR: Could not open 'model.tflite'.\nERROR: Benchmarking failed.",
     r"no 'count=\.\.\. avg=\.\.\.' statistics line .* Could not open 'model.tflite'"),
    (parse_ofakit_timer, "Traceback (most recent call last):\nModuleNotFoundError: No module named 'onnxruntime'",
     r"no '\{\"ofakit_timer\": \.\.\.\}' line .* No module named 'onnxruntime'"),
    (parse_ofakit_timer, '{"ofakit_timer": 1, "ms": []}', r"positive 'ms'"),
    (parse_ofakit_timer, '{"ofakit_timer": 1, "ms": [0.5, true]}', r"positive 'ms'"),
    (parse_ofakit_timer, '{"ofakit_timer": 1, "ms": [0.5, Infinity]}', r"positive 'ms'"),
    (parse_ofakit_timer, '{"ofakit_timer": 1, "ms": [NaN]}', r"positive 'ms'"),
    (parse_onnxruntime_perf_test, "", r"its last lines: \(no output\)"),
])
def test_garbage_output_is_named(parse, text, match):
    with pytest.raises(BenchOutputError, match=match):
        parse(text)
