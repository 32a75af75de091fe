"""reinforce: GRPO with verifiable rewards on the model the earlier steps ship, with a fresh LoRA, then merged.

Runs TRL's GRPOTrainer on the train split's rows (results/data/train.jsonl) whose reference answer is of a kind
reinforce.prompts lists (by default those offering tools: a call, or an answer in words where no tool fits). Each
prompt is rendered with the training template exactly as evaluate renders a held-out row, reinforce.num_generations
completions are sampled for it, and the rewards of tunemake.training.rewards (or the user's own) score each against the
row's reference: the policy moves toward the completions that beat their group's mean. The starting model is
tunemake.models.weights.final_model(merged, align): the DPO model when align ran, else the SFT one; with beta > 0 the KL
penalty's reference is that same model (the adapter disabled). Completions are sampled with transformers' generate,
or TRL's vLLM (colocate mode) on a GPU where vllm is installed (reinforce.vllm); the summary says which. Checkpoints,
resume after a kill, SIGTERM and torchrun DDP behave as in train (tunemake.training.trainer).

With reinforce.enabled false the output holds only summary.json saying so (and an empty headline.json), and later steps use the
model before it (tunemake.models.weights.final_model): the pipeline is the SFT (+ DPO) one.

Output: model/ (the merged GRPO model, what gguf and evaluate use), adapter/, history.json (per logging step: the
loss, the summed reward and its spread, each reward's mean and std, the KL to the starting model, the completions'
mean length), plots/train.tsv, summary.json, metrics.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Protocol

from tunemake.data.chat import Renderer, answer_kind, fast_tokenizer, format_call
from tunemake.data.jsonl import atomic_dir, read_jsonl, write_json
from tunemake.errors import StepError
from tunemake.evaluation import headline
from tunemake.models.weights import final_model, load
from tunemake.params import load as load_params
from tunemake.params.merge import MergeParams
from tunemake.params.reinforce import ReinforceParams
from tunemake.runtime import use_cores
from tunemake.training.methods.lora import lora_config

log = logging.getLogger(__name__)


class Sections(Protocol):
    """What this step reads of params.yaml: the reinforce and merge sections (tunemake.params.load)."""

    reinforce: ReinforceParams
    merge: MergeParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merged", type=Path, required=True, help="the merge step's output: the SFT model")
    parser.add_argument("--align", type=Path, help="the align step's output: its model is the start when it ran")
    parser.add_argument("--data", type=Path, required=True, help="the prepare step's output (its train split)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True, help="resumable checkpoints, outside --out")


def main(args: argparse.Namespace) -> None:
    run(
        load_params(args.params, args.set, reinforce=ReinforceParams, merge=MergeParams),
        args.merged,
        args.align,
        args.data,
        args.out,
        args.checkpoints,
    )


def prompt_rows(renderer: Renderer, train: Path, kinds: list[str]) -> list[dict]:
    """The train rows whose reference is of one of `kinds`, as the dataset TRL samples from: the prompt (every turn
    before the last assistant turn, rendered with the generation prompt) and the reference the rewards read.
    reference_calls and tools are JSON text: their schemas differ from row to row, which Arrow columns cannot hold."""
    rows = []
    for record in read_jsonl(train):
        kind = answer_kind(record)
        if kind not in kinds:
            continue
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        reference, tools = messages[last], record.get("tools") or []
        calls = reference.get("tool_calls") or []
        rows.append(
            {
                "prompt": renderer.render(*renderer.prepare(messages[:last], tools), add_generation_prompt=True),
                "id": record["id"],
                "kind": kind,
                "reference": "\n".join(filter(None, [reference["content"], *map(format_call, calls)])),
                "reference_calls": json.dumps(calls, ensure_ascii=False),
                "tools": json.dumps(tools, ensure_ascii=False),
            }
        )
    return rows


def uses_vllm(setting: str) -> bool:
    import importlib.util

    import torch

    if setting == "on" and not (torch.cuda.is_available() and importlib.util.find_spec("vllm")):
        raise StepError("reinforce.vllm is on but this machine has no GPU or no vllm package; use auto or off")
    return setting == "on" or (
        setting == "auto" and torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
    )


def grpo_config(params: ReinforceParams, checkpoints: Path, world_size: int, vllm: bool):
    from trl import GRPOConfig

    from tunemake.training.trainer import arguments

    return GRPOConfig(
        **{
            **arguments(params, checkpoints, world_size),
            "eval_on_start": False,  # no val pass: sampling completions for it would cost as much as training
            "eval_strategy": "no",
        },
        num_generations=params.num_generations,
        max_completion_length=params.max_completion_length,
        temperature=params.temperature,
        beta=params.beta,
        loss_type=params.loss_type,
        scale_rewards=params.scale_rewards,
        reward_weights=params.reward_weights,
        use_vllm=vllm,
        vllm_mode="colocate",
    )


def trainer_class():
    from trl import GRPOTrainer

    class RenderedPromptGRPOTrainer(GRPOTrainer):
        """GRPOTrainer on prompts rendered with the training template (tools included, per row), tokenized as
        tokenize does, without the tokenizer's own special tokens (the template writes those it wants)."""

        def _tokenize_prompts(self, prompts: list):
            return self.processing_class(text=prompts, add_special_tokens=False)["input_ids"], None, {}

    return RenderedPromptGRPOTrainer


def run(params: Sections, merged: Path, align: Path | None, data: Path, out: Path, checkpoints: Path) -> dict | None:
    if not params.reinforce.enabled:
        with atomic_dir(out) as tmp:
            write_json(tmp / "summary.json", {"enabled": False})
            write_json(tmp / headline.FILE, headline.reinforce({"enabled": False}))
        log.info("reinforce: off (reinforce.enabled: false); later steps use %s", final_model(merged, align))
        return None
    return grpo(params, final_model(merged, align), data, out, checkpoints)


def grpo(params: Sections, start: Path, data: Path, out: Path, checkpoints: Path) -> dict | None:
    """The step with reinforce on. Its imports are here so the step costs no torch import when off."""
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from tunemake.models.precision import training_precision
    from tunemake.training.callbacks import Progress, StopOnSignal
    from tunemake.training.rewards import reward_function
    from tunemake.training.trainer import (
        fingerprint,
        parameter_counts,
        resume_checkpoint,
        run_record,
        run_trainer,
        save_adapter_and_merged,
        tracking_callbacks,
    )

    reinforce = params.reinforce
    started = time.perf_counter()
    use_cores()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    vllm = uses_vllm(reinforce.vllm)
    config = grpo_config(reinforce, checkpoints, world_size, vllm)
    inputs = (start / "manifest.json", data / "train.jsonl")
    resume_from = resume_checkpoint(config, checkpoints, fingerprint(reinforce, world_size, *inputs))
    renderer = Renderer(fast_tokenizer(start))
    rows = prompt_rows(renderer, data / "train.jsonl", reinforce.prompts)
    if not rows:
        raise StepError(
            f"reinforce.enabled is true but {data / 'train.jsonl'} has no rows whose reference is of a kind "
            f"reinforce.prompts lists ({', '.join(reinforce.prompts)})"
        )
    rewards = [reward_function(spec) for spec in reinforce.rewards]

    set_seed(reinforce.seed)  # the adapter's initialisation draws random numbers before the Trainer seeds anything
    trainer = trainer_class()(
        model=load(start, dtype=torch.float32),
        reward_funcs=rewards,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=renderer.tokenizer,
        peft_config=lora_config(reinforce.lora),
        callbacks=[
            Progress(checkpoints / "live", "reinforce"),
            StopOnSignal(),
            *tracking_callbacks(reinforce, "reinforce", out, bool(resume_from)),
        ],
    )
    trainer.remove_callback(PrinterCallback)
    trainable, total = parameter_counts(trainer.model)
    generation = "vLLM (colocate)" if vllm else "transformers generate"
    kinds = {kind: sum(r["kind"] == kind for r in rows) for kind in reinforce.prompts}
    log.info(
        "reinforce: GRPO (%s, beta %g, %d completions per prompt, rewards %s) from %s on %d prompts %s, %s trainable "
        "of %s parameters, %s, completions by %s, %d process(es)",
        reinforce.loss_type,
        reinforce.beta,
        reinforce.num_generations,
        ", ".join(reinforce.rewards),
        start,
        len(rows),
        kinds,
        f"{trainable:,}",
        f"{total:,}",
        training_precision(reinforce.precision),
        generation,
        world_size,
    )
    run_trainer(trainer, resume_from, checkpoints)
    if not trainer.is_world_process_zero():
        return None
    with atomic_dir(out) as tmp:
        table = save_adapter_and_merged(trainer, start, tmp, params.merge.dtype)
        first, last = (table["train"][i] if table["train"] else {} for i in (0, -1))
        summary = {
            "enabled": True,
            "start": str(start),
            "reference": f"{start} with the adapter disabled" if reinforce.beta else None,
            "rewards": reinforce.rewards,
            "loss_type": reinforce.loss_type,
            "beta": reinforce.beta,
            "num_generations": reinforce.num_generations,
            "generation": generation,
            "prompts": kinds,
            "first": first,
            "last": last,
            **run_record(trainer, reinforce, resume_from, started, world_size),
        }
        write_json(tmp / "summary.json", summary)
        write_json(tmp / headline.FILE, headline.reinforce(summary))
    if not reinforce.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    log.info(
        "reinforce: %d steps, reward %s -> %s, KL %s, %.0fs, peak memory %.0f MB",
        summary["steps"],
        first.get("reward"),
        last.get("reward"),
        last.get("kl"),
        summary["wall_seconds"],
        summary["peak_memory_mb"]["rss"],
    )
    return summary
