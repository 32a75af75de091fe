"""What a step records about where it ran (peak memory, threads, CPU features, package versions, the git commit), and
the timeouts of a run across nodes."""

from __future__ import annotations

import functools
import os
import resource
import subprocess
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tunemake.errors import StepError

# How long a node waits for the others at the rendezvous, and how long a collective (a gradient all-reduce) waits for
# a peer before it fails: a node that never starts, or one lost mid-run, ends the job instead of hanging it.
RDZV_TIMEOUT = ("TUNEMAKE_RDZV_TIMEOUT", 600)
DDP_TIMEOUT = ("TUNEMAKE_DDP_TIMEOUT", 600)


def seconds(setting: tuple[str, int], env: Mapping[str, str] = os.environ) -> int:
    """A timeout from the environment (RDZV_TIMEOUT, DDP_TIMEOUT), in whole seconds."""
    name, default = setting
    value = env.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise StepError(f"{name}={value!r}: give a whole number of seconds, 1 or more (default {default})")
    return int(value)


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


# How much faster than float32 bfloat16 matmuls must be before auto precision takes their rounding; the CPUs measured
# are in docs/benchmarks/training.md.
BF16_PAYS = 1.3


def cpu_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU has bfloat16 dot-product instructions (whether they pay: cpu_bf16_pays)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features().get("flags", [])))


def matmul_gflops(device: str = "cpu", dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """The best of a few size x size matmuls on this process's threads: the ceiling to compare a step with."""
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=getattr(torch, dtype)) for _ in range(2))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - started)
    return round(2 * size**3 / best / 1e9, 1)


@functools.cache
@functools.cache
def cpu_matmul_rates() -> dict[str, float]:
    """torch's float32 and bfloat16 matmul GFLOP/s on this CPU (1024-square, about a fifth of a second), measured
    once per process: the precision a step chose and the rates its summary records are the same measurement."""
    return {dtype: matmul_gflops("cpu", dtype, size=1024, repeats=8) for dtype in ("float32", "bfloat16")}


def cpu_bf16_pays() -> bool:
    """What auto precision takes on a CPU: bfloat16 where the CPU has it and torch multiplies it at least BF16_PAYS
    times its float32 rate, measured here, since the flags alone mislead (a CPU that lists AVX-512 BF16 but whose
    AMX the hypervisor hides multiplies bfloat16 slower than float32: docs/benchmarks/training.md)."""
    if not cpu_bf16():
        return False
    rates = cpu_matmul_rates()
    return rates["bfloat16"] >= BF16_PAYS * rates["float32"]


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
