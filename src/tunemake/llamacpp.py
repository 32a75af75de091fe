"""Loading a GGUF file with llama-cpp-python, quietly and on every core this process may use."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tunemake.runtime import threads


def load(path: Path, n_ctx: int = 512):
    import llama_cpp

    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads(), verbose=False)
