"""Where tunemake keeps what it fetches or derives once per machine: the llama.cpp converter, dequantised GGUF bases."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def cache_root() -> Path:
    return Path(
        os.environ.get("TUNEMAKE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunemake"
    )


def make_once(entry: Path, ready: Callable[[], bool], make: Callable[[], None]) -> Path:
    """The cache entry, made by `make` unless `ready`. Runs that share the cache (a sweep, steps started together,
    parallel tests) make it once under a file lock while the others wait, and none reads a half-written entry; an
    entry already there is taken without the lock, so a read-only cache that holds it works."""
    if not ready():
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{entry}.lock"):
            if not ready():
                make()
    return entry
