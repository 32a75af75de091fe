"""Training throughput: padded vs padding-free batches, and the loss head on every position vs assistant positions only.

One process, one model (the train.lora settings from params.yaml on results/base), the same randomly drawn rows in
the same batches for every variant ("length-grouped" sorts them by length first, as train.group_by_length does);
variants run interleaved, `--repeats` times each, and the median is reported. Tokens/s counts real tokens only
(never padding). Forward and backward, no optimizer step, in training mode (dropout on). It also measures the
process's float32 matmul peak and reports each variant's achieved GFLOP/s as a fraction of it, with the CPU's
model and flags (figures from two CPUs are not comparable). On a GPU it runs as training would there: float32 master
weights under bf16 (or fp16) autocast, timed after a device synchronise. Prints JSON.

    python benchmarks/train_throughput.py --rows 32 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import torch
from peft import get_peft_model
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from tunemake.models import weights
from tunemake.models.precision import training_precision
from tunemake.models.weights import frozen_in_autocast_dtype
from tunemake.params.schema import load
from tunemake.runtime import cpu_features, matmul_gflops
from tunemake.training.loss import assistant_loss
from tunemake.training.methods.lora import lora_config


def all_positions_loss(model, batch):
    """The model's own loss: every position goes through the output head."""
    return model(**batch, use_cache=False).loss


@dataclass(frozen=True)
class Variant:
    padding_free: bool = False
    length_grouped: bool = True
    loss: Callable = assistant_loss
    dropout: bool = True  # LoRA dropout as configured; False: PEFT's Identity for dropout 0, no copy of the input
    cpu_bf16: bool = False  # bf16 autocast on a CPU: float32 weights, bfloat16 matmuls (TrainingArguments(bf16=True))
    frozen_bf16: bool = False  # frozen Linear weights stored in bfloat16: what train does under bf16 autocast
    attention: str | None = None  # None: the model's own (sdpa)


TRAIN = Variant(dropout=False, cpu_bf16=True, frozen_bf16=True)  # what train runs on a CPU with bf16
VARIANTS = {
    "padded": Variant(length_grouped=False),
    "padded, length-grouped": Variant(),
    "padded, length-grouped, LoRA dropout 0": Variant(dropout=False),
    "padding_free": Variant(padding_free=True, length_grouped=False),
    "padded, head on all positions": Variant(length_grouped=False, loss=all_positions_loss),
    "padded, length-grouped, bf16 autocast": Variant(cpu_bf16=True),
    "padded, length-grouped, bf16 autocast, LoRA dropout 0": Variant(dropout=False, cpu_bf16=True),
    "padded, length-grouped, bf16 autocast, LoRA dropout 0, frozen in bf16": TRAIN,
    # measured, not taken: eager keeps batch x heads x length^2 attention weights per layer (docs/benchmarks/training.md)
    "padded, length-grouped, bf16 autocast, LoRA dropout 0, frozen in bf16, eager attention": replace(
        TRAIN, attention="eager"
    ),
}


def flops_per_token(model) -> float:
    """Forward 2N, backward 2N for the activations' gradients through the frozen weights, 4 more per trainable
    weight (its gradient and the optimizer's share is not counted: no optimizer step here). Attention's own
    matmuls are left out (small at these lengths); the output head counts fully, an upper bound."""
    frozen = sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad and "embed_tokens" not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4 * frozen + 6 * trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("results/base"))
    parser.add_argument("--data", type=Path, default=Path("results/tokenized"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu_autocast = torch.autocast(
        device,
        dtype=torch.bfloat16 if training_precision("auto") == "bf16" else torch.float16,
        enabled=device == "cuda",
    )
    model = weights.load(args.base, dtype=torch.float32).to(device)  # results/base pins the weights
    model = get_peft_model(model, lora_config(load(args.params).train.lora))
    train = datasets.load_from_disk(str(args.data / "dataset"))["train"].remove_columns("id")
    rows = list(train.shuffle(seed=0).select(range(min(args.rows, len(train)))))
    real_tokens = sum(len(r["input_ids"]) for r in rows)

    def batches(length_grouped: bool) -> list[list[dict]]:
        ordered = sorted(rows, key=lambda r: len(r["input_ids"])) if length_grouped else rows
        return [ordered[i : i + args.batch_size] for i in range(0, len(ordered), args.batch_size)]

    model.train()  # as the trainer runs it: dropout active
    dropouts = {name: module.lora_dropout for name, module in model.named_modules() if hasattr(module, "lora_dropout")}
    saved = [dict(holder) for holder in dropouts.values()]

    attention = model.config._attn_implementation

    def measure(variant: Variant) -> tuple[float, int, float]:
        model.base_model.model.set_attn_implementation(variant.attention or attention)
        collate = DataCollatorForLanguageModeling(
            pad_token_id=model.config.pad_token_id or 0, padding_free=variant.padding_free
        )
        for holder in dropouts.values():  # an Identity is what PEFT builds for dropout 0: no copy of the input
            for adapter in holder:
                holder[adapter] = holder[adapter] if variant.dropout else torch.nn.Identity()
        kept = frozen_in_autocast_dtype(model, "bf16") if variant.frozen_bf16 else []
        computed, losses, started = 0, [], time.perf_counter()
        for group in batches(variant.length_grouped):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(group).items()}
            computed += batch["input_ids"].numel()
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if variant.cpu_bf16 else gpu_autocast
            with autocast:
                loss = variant.loss(model, batch)
            loss = loss[0] if isinstance(loss, tuple) else loss
            loss.backward()
            losses.append(loss.item())  # .item() waits for the device, so the clock sees finished work
        seconds = time.perf_counter() - started
        for tensor, data in kept:
            tensor.data = data
        model.zero_grad(set_to_none=True)
        for holder, original in zip(dropouts.values(), saved):
            holder.update(original)
        return seconds, computed, sum(losses) / len(losses)

    measure(VARIANTS[args.variants[0]])  # warm-up: allocator and kernel caches
    timings = {name: [] for name in args.variants}
    for _ in range(args.repeats):
        for name in args.variants:
            timings[name].append(measure(VARIANTS[name]))
    peak, peak_bf16 = matmul_gflops(device), matmul_gflops(device, "bfloat16")
    per_token = flops_per_token(model)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "cpu": cpu_features(),
        "matmul_peak_gflops_fp32": peak,
        "matmul_peak_gflops_bf16": peak_bf16,
        "flops_per_token": per_token,
        "precision": training_precision("auto"),
        "attention": attention,
        "threads": torch.get_num_threads(),
        "rows": len(rows),
        "batch_size": args.batch_size,
        "real_tokens": real_tokens,
        "variants": {},
    }
    for name, runs in timings.items():
        seconds = statistics.median(r[0] for r in runs)
        result["variants"][name] = {
            "seconds": round(seconds, 2),
            "real_tokens_per_second": round(real_tokens / seconds, 1),
            "computed_tokens": runs[0][1],
            "pad_share": round(1 - real_tokens / runs[0][1], 3),
            "mean_loss": round(runs[0][2], 5),
            "achieved_gflops": round(real_tokens * per_token / seconds / 1e9, 1),
            # of the peak in the variant's own matmul precision
            "fraction_of_matmul_peak": round(
                real_tokens * per_token / seconds / 1e9 / (peak_bf16 if VARIANTS[name].cpu_bf16 else peak), 3
            ),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
