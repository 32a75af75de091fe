"""The pinned llama.cpp's sources: the llama-cpp-python sdist of the installed version, downloaded once from the
package index (pip download, never a git branch) into the cache. The converter step and llama-server
(tunemake.llama.llamaserver) both come from its vendor/llama.cpp, so they are the llama.cpp the Python binding was built
from."""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
from pathlib import Path

from tunemake.cache import cache_root, make_once
from tunemake.data.jsonl import atomic_dir
from tunemake.errors import StepError

log = logging.getLogger("tunemake")
PACKAGE = "llama-cpp-python"


def sdist(pinned: str) -> Path:
    """The llama-cpp-python==pinned sdist archive, downloaded once into the cache."""
    folder = cache_root() / f"{PACKAGE}-{pinned}-sdist"
    make_once(folder, lambda: any(folder.glob("*.tar.gz")), lambda: _download(pinned, folder))
    return next(folder.glob("*.tar.gz"))


def extract(archive: Path, into: Path, wanted: tuple[str, ...] = ("",), skip: tuple[str, ...] = ()) -> None:
    """The files under vendor/llama.cpp/ of the sdist whose relative path starts with one of `wanted` and none of
    `skip`, extracted into `into` (paths relative to vendor/llama.cpp)."""
    with tarfile.open(archive) as tar:
        prefix = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
        members = []
        for member in tar.getmembers():
            name = member.name[len(prefix) :]
            if member.name.startswith(prefix) and name.startswith(wanted) and not name.startswith(skip):
                member.name = name
                members.append(member)
        tar.extractall(into, members=members, filter="data")


def _download(pinned: str, target: Path) -> None:
    log.info("downloading the %s==%s sdist (once; cached in %s)", PACKAGE, pinned, target)
    with atomic_dir(target) as staging:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(staging),
            f"{PACKAGE}=={pinned}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not list(staging.glob("*.tar.gz")):
            raise StepError(
                f"could not download the {PACKAGE}=={pinned} sdist from the package index:\n"
                f"{result.stderr.strip()[-2000:]}\nCheck the network or pip's index settings "
                f"(PIP_INDEX_URL), or set TUNEMAKE_CACHE to a folder holding {target.name}/."
            )
