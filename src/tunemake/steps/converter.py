"""converter: llama.cpp's convert_hf_to_gguf.py, taken from the sdist of the llama-cpp-python version installed.

The converter must match the llama.cpp that llama-cpp-python was built from, and it ships in that package's sdist
(vendor/llama.cpp) but not in its wheel. The sdist comes from the package index (pip download), never from a git
branch, downloaded once per version into the cache (tunemake.llama.sdist, which llama-server is built from too); the
few files the converter needs are extracted once into a per-version cache and copied into the step's output, so the
gguf step reads only declared files.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from importlib.metadata import version
from pathlib import Path

from tunemake.cache import cache_root, make_once
from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.errors import StepError
from tunemake.llama.sdist import PACKAGE, extract, sdist

log = logging.getLogger("tunemake")
TEMPLATES = "models/templates/"  # the real chat templates llama.cpp tests with: tests/test_templates.py reads them
NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", TEMPLATES)  # under vendor/llama.cpp/ in the sdist


def fetch(pinned: str) -> Path:
    """The extracted converter for llama-cpp-python==pinned, downloading the sdist on first use."""
    target = cache_root() / f"llama.cpp-converter-{pinned}"
    ready = lambda: all((target / name).exists() for name in NEEDED)  # noqa: E731

    def make() -> None:
        with atomic_dir(target) as staging:
            extract(sdist(pinned), staging, NEEDED)
            if not (staging / "convert_hf_to_gguf.py").is_file():
                raise StepError(f"the {PACKAGE}=={pinned} sdist has no vendor/llama.cpp/convert_hf_to_gguf.py")

    return make_once(target, ready, make)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the converter and its gguf-py, for the gguf step")


def main(args: argparse.Namespace) -> None:
    run(args.out)


def run(out: Path) -> dict:
    pinned = version(PACKAGE)
    source = fetch(pinned)
    with atomic_dir(out) as tmp:
        ignore = shutil.ignore_patterns("__pycache__", TEMPLATES.split("/")[0])  # the gguf step needs no templates
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=ignore)
        manifest = {"package": PACKAGE, "version": pinned, "script": "convert_hf_to_gguf.py", "gguf_py": "gguf-py"}
        write_json(tmp / "manifest.json", manifest)
    log.info("converter: llama.cpp converter of %s %s -> %s", PACKAGE, pinned, out)
    return manifest
