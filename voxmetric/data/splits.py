"""Named speaker splits of a corpus (``splits.json``: split -> speakers), as the built-in
corpus writes them (train / val / test, disjoint)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError


def split_speakers(root: str, split: str) -> list[str]:
    """The speakers of ``split`` in the ``splits.json`` of a corpus (built-in corpus layout)."""
    candidates = [Path(root) / "splits.json", Path(root).parent / "splits.json"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ConfigError(f"data.split is '{split}' but {root} has no splits.json (nor has its parent folder)")
    splits = json.loads(path.read_text(encoding="utf-8"))
    if split not in splits:
        raise ConfigError(f"data.split '{split}' is not in {path} (it has: {', '.join(sorted(splits))})")
    return list(splits[split])
