"""The number format each kind of work runs in, decided in one place.

Every choice rests on one measurement where there is no GPU: runtime.cpu_bf16_pays, whether this CPU multiplies
bfloat16 at least 1.3 times as fast as float32 (the flags alone mislead: docs/benchmarks/training.md).
- training: bf16 (or fp16) on a GPU, bf16 autocast on a CPU where it pays, else fp32 (train, align, reinforce);
- scoring: the teacher-forced passes (losses, preference log-probabilities) in bf16 autocast where it pays;
- weights: generation with weights held in bfloat16 where it pays (replay);
- QLoRA's compute dtype.
"""

from __future__ import annotations

from tunemake.errors import StepError
from tunemake.runtime import cpu_bf16, cpu_bf16_pays


def training_precision(name: str) -> str:
    """auto: bf16 on a GPU that has it, else fp16 there; on a CPU, bf16 autocast (float32 weights, bfloat16 matmuls)
    where it has AVX-512 BF16 or AMX and they measure faster (runtime.cpu_bf16_pays), else fp32. What bf16 autocast
    gains or loses on the CPUs measured: docs/benchmarks/training.md."""
    import torch

    gpu = torch.cuda.is_available()
    if name == "auto":
        if gpu:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_bf16_pays() else "fp32"
    if name == "fp16" and not gpu:
        raise StepError(
            "precision is fp16 but there is no GPU here; use auto, fp32 or (on a CPU with AVX-512 BF16) bf16"
        )
    if name == "bf16" and not gpu and not cpu_bf16():
        raise StepError(
            "precision is bf16 but there is no GPU here and this CPU has neither AVX-512 BF16 nor AMX "
            "(/proc/cpuinfo); use auto or fp32"
        )
    return name


def scoring_precision() -> str:
    """bf16 autocast for teacher-forced scoring where the CPU multiplies bfloat16 fast (runtime.cpu_bf16_pays, as
    train's precision auto), else fp32: faster, with the same rankings and losses to a few decimals
    (docs/benchmarks/evaluate.md)."""
    import torch

    return "bf16" if not torch.cuda.is_available() and cpu_bf16_pays() else "fp32"


def scoring_context():
    """The context teacher-forced passes run in: no gradients, and scoring_precision's autocast."""
    import contextlib

    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if scoring_precision() == "bf16":
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    return stack


def fast_weights_dtype() -> str:
    """bfloat16 where the device multiplies it fast (a GPU that has it, a CPU where runtime.cpu_bf16_pays), else
    float32. Weights held in bfloat16, not autocast: autocast casts every weight at every step, which dominates
    generating a few tokens at a time (docs/benchmarks/replay.md)."""
    import torch

    fast = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_bf16_pays()
    return "bfloat16" if fast else "float32"


def qlora_compute_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)
