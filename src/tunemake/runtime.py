"""What a step records about where it ran: peak memory, threads, CPU features, package versions, the git commit."""

from __future__ import annotations

import os
import resource
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "tunemake"]
# The flags that change which kernels torch and bitsandbytes run on a CPU (bitsandbytes' 4-bit path differs on
# AVX-512 BF16), so figures and failures from two machines can be told apart.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")


def threads() -> int:
    """The cores this process may run on (a SLURM job or container may get fewer than the machine has)."""
    return len(os.sched_getaffinity(0))


def use_cores() -> None:
    """Run torch on this process's share of the cores it may use: Snakemake starts a job with OMP_NUM_THREADS set to
    its rule's threads (1 by default) and torchrun each process with 1, which would leave torch one core."""
    import torch

    torch.set_num_threads(max(1, threads() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def cpu_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU multiplies bfloat16 at about twice its float32 rate."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features().get("flags", [])))


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def peak_memory_mb() -> dict:
    import torch

    memory = {"rss": peak_rss_mb()}
    if torch.cuda.is_available():
        memory["gpu_allocated"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return memory


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model name and which of CPU_FLAGS it has (empty where /proc/cpuinfo is not there)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), "flags": [f for f in CPU_FLAGS if f in flags]}


def package_versions() -> dict[str, str | None]:
    """None for a package that is importable without being installed (a source checkout on PYTHONPATH)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty.strip() else "")
