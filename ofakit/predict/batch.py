"""Latency estimates for a file of archs in one call: what a user scoring candidate subnets, or a benchmark, needs.

The file holds one ArchConfig JSON object per line, with or without its `space` key (the space given fills it in);
every arch is checked against the space, and the whole list is estimated with one vectorized `estimate_batch`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ofakit.arch import ArchConfig
from ofakit.errors import ConfigError
from ofakit.io import read_user_file
from ofakit.latency.estimate import Estimator
from ofakit.space import get_space


def read_arch_lines(path: str | Path, space: str) -> list[ArchConfig]:
    """The archs of a JSONL file (blank lines skipped); a line that is not an arch of `space` is one ConfigError line
    naming the file and the line."""
    sp = get_space(space)

    def parse(text: str) -> list[ArchConfig]:
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ConfigError(f"expected an ArchConfig object, got {type(data).__name__}")
                arch = ArchConfig.from_dict({"space": space, **data})
                if arch.space != space:
                    raise ConfigError(f"an arch of space {arch.space!r}, not {space!r}")
                sp.validate(arch)
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"line {i}: {exc}") from None
            out.append(arch)
        return out

    return read_user_file(path, "an arch list (JSON lines of ArchConfig objects)", parse)


def estimate_archs(estimator: Estimator, archs: list[ArchConfig], *, scale: float = 1.0) -> list[dict[str, Any]]:
    """`[{"arch": ..., "latency_ms": ...}]` in the order of `archs`, from one `estimate_batch` call (times `scale`,
    the machine's drift)."""
    ms = estimator.estimate_batch(archs, scale=scale) if archs else []
    return [{"arch": a.to_dict(), "latency_ms": round(float(m), 4)} for a, m in zip(archs, ms)]
