"""DPO (align) step time: TRL's fused LM head on every position (its CPU default) vs on answer tokens only (what
align does, as TRL's GPU path does).

Runs TRL's DPOTrainer as the align step builds it (results/merged, the align.lora adapter, the pairs step's train
split) for `--steps` optimizer steps per variant, variants interleaved `--repeats` times, and reports the median
seconds per step and the answer tokens' share of all tokens. No evaluation, no checkpoints. Prints JSON.

    python benchmarks/align_throughput.py --merged results/merged --pairs results/pairs --steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tunemake.data.chat import Renderer, fast_tokenizer
from tunemake.models.weights import load as load_model
from tunemake.params.schema import load
from tunemake.runtime import cpu_features
from tunemake.steps import align
from tunemake.training.methods.lora import lora_config

VARIANTS = {"every position": contextlib.nullcontext, "answer tokens only": align.answer_tokens_only}


def seconds_per_step(params, merged: Path, data, tokenizer, variant: str, steps: int) -> float:
    from transformers import set_seed
    from trl import DPOTrainer

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *args):
            return dataset

        def _compute_loss(self, model, inputs, return_outputs):
            with VARIANTS[variant]():
                return super()._compute_loss(model, inputs, return_outputs)

    with tempfile.TemporaryDirectory() as scratch:
        config = align.dpo_config(params.align.model_copy(update={"max_steps": steps}), Path(scratch), 1)
        config.eval_strategy, config.eval_on_start, config.save_strategy = "no", False, "no"
        set_seed(0)
        trainer = Trainer(
            model=load_model(merged, dtype=torch.float32),
            args=config,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=lora_config(params.align.lora),
        )
        started = time.perf_counter()
        trainer.train()
        return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--merged", type=Path, default=Path("results/merged"))
    parser.add_argument("--pairs", type=Path, default=Path("results/pairs"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    params = load(args.params)
    renderer = Renderer(fast_tokenizer(args.merged))
    with tempfile.TemporaryDirectory() as scratch:
        config = align.dpo_config(params.align, Path(scratch), 1)
        data = align.pair_datasets(config, renderer, args.pairs, Path(scratch) / "pairs")["train"]
        answer = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in data)
        total = answer + 2 * sum(len(r["prompt_ids"]) for r in data)
        timings = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name in VARIANTS:
                timings[name].append(seconds_per_step(params, args.merged, data, renderer.tokenizer, name, args.steps))
    medians = {name: round(statistics.median(values), 2) for name, values in timings.items()}
    print(
        json.dumps(
            {
                "seconds_per_step": medians,
                "speedup": round(medians["every position"] / medians["answer tokens only"], 2),
                "pairs_per_step": params.align.batch_size * params.align.gradient_accumulation,
                "answer_token_share": round(answer / total, 3),
                "threads": torch.get_num_threads(),
                "cpu": cpu_features(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
