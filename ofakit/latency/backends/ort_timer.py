"""ofakit's ONNX Runtime timer: a standalone script that times an ONNX model and prints every call's milliseconds.

The remote runner copies this file to an ssh or adb target whose device file names a `python` (with numpy and
onnxruntime) instead of a `benchmark` tool, and runs

    python ort_timer.py MODEL.onnx --runs N --warmup W --threads T --providers CPUExecutionProvider

which prints one JSON line `{"ofakit_timer": 1, "runtime_version": "...", "ms": [...]}`. It imports nothing from
ofakit, so the target needs no ofakit. The local ONNX Runtime backend builds its sessions and IO bindings with the
same `session_options` and `bind_io`, so a remote timing and a local one measure the same thing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def session_options(ort: Any, threads: int) -> Any:
    """Sequential execution on `threads` intra-op threads (0: the runtime's default), every graph optimization."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def bind_io(session: Any, x: Any) -> Any:
    """An IO binding with `x` bound once and the outputs left in ONNX Runtime's memory (no copy per call)."""
    binding = session.io_binding()
    binding.bind_cpu_input(session.get_inputs()[0].name, x)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cpu")
    return binding


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import onnxruntime as ort

    p = argparse.ArgumentParser(description="time an ONNX model with ONNX Runtime; prints one JSON line")
    p.add_argument("model")
    p.add_argument("--runs", type=int, required=True, help="timed calls")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    p.add_argument("--providers", nargs="*", default=["CPUExecutionProvider"])
    args = p.parse_args(argv)
    session = ort.InferenceSession(args.model, session_options(ort, args.threads), providers=args.providers)
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    binding = bind_io(session, np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    run = session.run_with_iobinding
    for _ in range(args.warmup):
        run(binding)
    ms = []
    for _ in range(args.runs):
        start = time.perf_counter()
        run(binding)
        ms.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"ofakit_timer": 1, "runtime_version": ort.__version__, "ms": ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
