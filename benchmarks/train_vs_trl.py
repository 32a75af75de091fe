"""`tunemake train` against the plain TRL + PEFT script a user would write, on the same rows, in one run.

Made for a GPU: a random-weights model with a real architecture's shape (weights cannot
travel; default: Llama 3.2 1B's shape with the bundled tokenizer's vocabulary, about 1.0B parameters), trained for
the same steps on the default data's training split with the same LoRA, batch, learning rate and schedule. tunemake
runs as a user runs it: `tunemake base`, `prepare`, `tokenize`, `train`, each its own process. The baseline is
TRL's `SFTTrainer` with a PEFT `LoraConfig` on the very token rows tokenize wrote (loss on the answer tokens only,
like tunemake), in a process of its own, with TRL's defaults except where they would make the two differ (TRL
turns gradient checkpointing on: it follows train.gradient_checkpointing here). Both count real tokens (no
padding); tokens/s is the median over the steps after `--warmup`; MFU is tokens/s x FLOPs per token (4 x the
non-embedding parameters and the output head: LoRA's frozen weights, forward and backward) over the matmul peak
the script measures on the same device in the dtype training computes in (bf16 or fp16 autocast, else fp32: a CPU
without AVX-512 BF16 trains in fp32, and its bf16 matmuls are emulated, hundreds of times slower); peak memory is
the process's (on a GPU, torch's peak allocation). Prints JSON.

    python benchmarks/train_vs_trl.py                          # a GPU: Llama 3.2 1B's shape, 40 steps
    python benchmarks/train_vs_trl.py --shape tiny --steps 3   # a CPU smoke run (tests/test_benchmarks.py)

It has not been run on a GPU yet; the CPU figures are in docs/benchmarks/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tunemake.evaluation.heldout import in_fresh_process
from tunemake.runtime import cpu_features, matmul_gflops

REPO = Path(__file__).resolve().parent.parent

SHAPES = {  # config class and sizes of real models (their own vocabularies replaced by the bundled tokenizer's)
    "llama-3.2-1b": ("LlamaConfig", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                         num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0)),
    "qwen2.5-0.5b": ("Qwen2Config", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                         num_attention_heads=14, num_key_value_heads=2, rope_theta=1000000.0)),
    "smollm2-135m": ("LlamaConfig", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                         num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0)),
    "tiny": ("LlamaConfig", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2)),
}  # fmt: skip


def make_model(out: Path, shape: str) -> int:
    """A random model of `shape` with the bundled SmolLM2 tokenizer, saved in bf16 as real checkpoints ship; returns
    the parameters a token passes through (all but the embeddings, plus the tied output head)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunemake.models.weights import BUNDLED_FILE, resolve
    from tunemake.params.base import BaseParams

    gguf = Path(resolve(BaseParams())["path"])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=BUNDLED_FILE)
    config_class, sizes = SHAPES[shape]
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **sizes,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())  # the embedding's lookup is free, but tied, it is the head


def trl_baseline(model_dir: str, tokenized: str, train: dict, precision: str, warmup: int) -> dict:
    """Plain TRL + PEFT on the tokenized training rows in tunemake's precision (TRL's bf16 default fails on a CPU);
    per-step real tokens and seconds from a callback."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunemake.runtime import peak_memory_mb

    rows = datasets.load_from_disk(tokenized)["train"]
    rows = rows.map(lambda r: {"completion_mask": [int(label != -100) for label in r["labels"]]})
    rows = rows.remove_columns(["id", "labels"])
    cuda = torch.cuda.is_available()

    steps: list[tuple[float, int]] = []  # (seconds, real tokens) per optimizer step

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.started, self.seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            steps.append((time.perf_counter() - self.started, state.num_input_tokens_seen - self.seen))

    lora = train["lora"]
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            train_dataset=rows,
            peft_config=LoraConfig(
                r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules="all-linear"
            ),
            args=SFTConfig(
                output_dir=out,
                per_device_train_batch_size=train["batch_size"],
                gradient_accumulation_steps=train["gradient_accumulation"],
                max_steps=train["max_steps"],
                learning_rate=train["learning_rate"],
                lr_scheduler_type=train["lr_scheduler"],
                warmup_steps=train["warmup_ratio"],  # a float below 1 is a fraction of the steps, as tunemake passes it
                gradient_checkpointing=train["gradient_checkpointing"],
                bf16=precision == "bf16",
                fp16=precision == "fp16",
                use_cpu=not cuda,
                completion_only_loss=True,
                include_num_input_tokens_seen="non_padding",
                logging_steps=1,
                save_strategy="no",
                report_to=[],
            ),
            callbacks=[StepTimes()],
        )
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs: stdout is the JSON's
            trainer.train()
        wall = time.perf_counter() - started
    return {
        "tokens_per_second": round(statistics.median(tokens / seconds for seconds, tokens in steps[warmup:]), 1),
        "train_seconds": round(wall, 1),
        "steps": len(steps),
        "peak_memory_mb": peak_memory_mb(),
        "precision": precision,
    }


def tunemake_train(root: Path, warmup: int) -> dict:
    def step(*args: str) -> float:
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).with_name("tunemake")), *args], cwd=root, check=True, stdout=sys.stderr
        )
        return time.perf_counter() - started

    step("base", "--out", "results/base")
    step("prepare", "--out", "results/data")
    step("tokenize", "--base", "results/base", "--data", "results/data", "--out", "results/tokenized")
    wall = step("train", "--base", "results/base", "--data", "results/tokenized", "--out", "results/train",
                "--checkpoints", "checkpoints/train")  # fmt: skip
    history = json.loads((root / "results/train/history.json").read_text())["train"]
    summary = json.loads((root / "results/train/summary.json").read_text())
    return {
        "tokens_per_second": round(statistics.median(s["tokens_per_second"] for s in history[warmup:]), 1),
        "train_seconds": round(wall, 1),
        "steps": summary["steps"],
        "peak_memory_mb": summary["peak_memory_mb"],
        "precision": summary["precision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="llama-3.2-1b")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps for each")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the median")
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default: train.batch_size)")
    parser.add_argument("--gradient-accumulation", type=int, help="default: train.gradient_accumulation")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "data", root / "data")
        passes_through = make_model(root / "model", args.shape)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["base"]["model"] = str(root / "model")
        params["prepare"]["replay"] = 0
        train = params["train"]
        train.update(max_steps=args.steps, eval_steps=args.steps, checkpoint_steps=args.steps, keep_best=False)
        train["batch_size"] = args.batch_size or train["batch_size"]
        train["gradient_accumulation"] = args.gradient_accumulation or train["gradient_accumulation"]
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        ours = tunemake_train(root, args.warmup)
        baseline = in_fresh_process(trl_baseline, str(root / "model"), str(root / "results/tokenized/dataset"), train,
                                    ours["precision"],
                                    args.warmup)  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(ours["precision"], "float32")
    peak = matmul_gflops(device, dtype, size=8192 if device == "cuda" else 2048)
    per_token = 4 * passes_through
    for result in (ours, baseline):
        result["mfu"] = round(result["tokens_per_second"] * per_token / 1e9 / peak, 4)
    print(
        json.dumps(
            {
                "shape": args.shape,
                "parameters_per_token": passes_through,
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "cpu": cpu_features(),  # figures from two CPUs are not comparable
                "matmul_peak_gflops": peak,
                "matmul_peak_dtype": str(dtype).removeprefix("torch."),
                "settings": {k: train[k] for k in ("batch_size", "gradient_accumulation", "max_steps", "lora")},
                "tunemake": ours,
                "trl_peft": baseline,
                "speedup": round(ours["tokens_per_second"] / baseline["tokens_per_second"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
