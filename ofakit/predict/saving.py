"""How the learned latency models (predictor, op model, structural, adapted) write themselves: one JSON file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from ofakit.io import save_text_file


class SavedAsJson:
    """Mixin: `save(path)` writes `to_dict()` as JSON atomically (a crash leaves the previous file), remembers the
    path in `self.path` and returns it. `FILE_WHAT` names the model in a write error; `COMPACT` drops the indentation
    (models with large arrays)."""

    FILE_WHAT: ClassVar[str] = "latency model"
    COMPACT: ClassVar[bool] = False
    path: Path | None

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = self.to_dict()
        text = json.dumps(data, separators=(",", ":")) if self.COMPACT else json.dumps(data, indent=1)
        save_text_file(path, text + "\n", self.FILE_WHAT)
        self.path = path
        return path
