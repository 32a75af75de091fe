"""Where tunemake keeps what it fetches or derives once per machine: the llama.cpp converter, dequantised GGUF bases."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(
        os.environ.get("TUNEMAKE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunemake"
    )
