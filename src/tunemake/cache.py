"""Where tunemake keeps what it fetches or derives once per machine: the llama.cpp converter, dequantised GGUF bases."""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock


def cache_root() -> Path:
    return Path(
        os.environ.get("TUNEMAKE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunemake"
    )


def lock(entry: Path) -> FileLock:
    """Held while an entry is made: runs that share the cache (a sweep, steps started together, parallel tests) make
    it once, the others wait for it, and none reads a half-written entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{entry}.lock")
