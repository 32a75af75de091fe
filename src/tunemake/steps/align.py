"""align: preference optimisation (DPO) of the merged SFT model with a fresh LoRA, then merged like an SFT adapter.

Runs TRL's DPOTrainer on the pairs step's train split (val for the curves). The policy is results/merged with a new
adapter (align.lora); the reference is the same model with the adapter disabled, i.e. the SFT model itself, never the
pre-SFT base (the trap of continuing an SFT adapter into DPO: LLaMA-Factory #8459). At step 0 the two are equal, so the
first margins are 0. Pairs are tokenized here with the training template exactly as tokenize renders rows
(tunemake.data.chat.encode_pair), and TRL's own tokenization is skipped. Checkpoints, resume after a kill, SIGTERM and
torchrun DDP behave as in train (tunemake.training.trainer).

With align.enabled false the output holds only summary.json saying so (and an empty headline.json), and later steps use
results/merged (tunemake.models.weights.final_model): the pipeline is the SFT one.

Output: model/ (the merged aligned model, what gguf and evaluate use), adapter/, history.json with the rewards of
chosen and rejected answers, their margins and accuracies per step, plots/{train,eval}.tsv, summary.json, headline.json
(tunemake.evaluation.headline).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from tunemake.data.chat import Renderer, encode_pair, fast_tokenizer
from tunemake.data.jsonl import atomic_dir, read_jsonl, write_json
from tunemake.errors import StepError
from tunemake.evaluation import headline
from tunemake.models.weights import load
from tunemake.params import load as load_params
from tunemake.params.align import AlignParams
from tunemake.params.merge import MergeParams
from tunemake.runtime import use_cores
from tunemake.training.methods.lora import lora_config

log = logging.getLogger(__name__)


class Sections(Protocol):
    """What this step reads of params.yaml: the align and merge sections (tunemake.params.load)."""

    align: AlignParams
    merge: MergeParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merged", type=Path, required=True, help="the merge step's output: the SFT model")
    parser.add_argument("--pairs", type=Path, required=True, help="the pairs step's output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True, help="resumable checkpoints, outside --out")


def main(args: argparse.Namespace) -> None:
    run(
        load_params(args.params, args.set, align=AlignParams, merge=MergeParams),
        args.merged,
        args.pairs,
        args.out,
        args.checkpoints,
    )


@contextmanager
def answer_tokens_only():
    """TRL's fused LM head scores only the answer tokens on a GPU, but every position without Triton (its "compact"
    switch, meant to spare Neuron recompilations): on CPU that pushes the prompts too (about 85% of the tokens here)
    through the 49k-word head. Flip the switch for the duration of a loss computation; the kernel itself still picks
    its torch path on CPU. TRL is pinned (envs/requirements.lock), and a change of the name fails loudly here."""
    import trl.trainer.utils as fused

    original = fused._use_triton
    fused._use_triton = lambda device: True
    try:
        yield
    finally:
        fused._use_triton = original


def trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer on pairs already tokenized by encode_pair (TRL would render them with the model's own
        template, not the training one), scoring answer tokens only."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _compute_loss(self, model, inputs, return_outputs):
            with answer_tokens_only():
                return super()._compute_loss(model, inputs, return_outputs)

        def compute_ref_log_probs(self, model, inputs):
            with answer_tokens_only():
                return super().compute_ref_log_probs(model, inputs)

    return PretokenizedDPOTrainer


def dpo_config(params: AlignParams, checkpoints: Path, world_size: int):
    from trl import DPOConfig

    from tunemake.training.trainer import arguments

    return DPOConfig(
        **arguments(params, checkpoints, world_size),
        beta=params.beta,
        loss_type=params.loss,
        loss_weights=params.loss_weights,
        max_length=params.max_length,
        precompute_ref_log_probs=params.precompute_ref,
        eval_strategy="epoch",
        include_num_input_tokens_seen="non_padding",
    )


def pair_datasets(config, renderer: Renderer, pairs: Path, folder: Path) -> dict:
    """The train and val pairs as token ids, saved under `folder` by the main process (TRL caches precomputed
    reference log-probs beside them) and loaded by every process."""
    from datasets import Dataset, load_from_disk

    with config.main_process_first(local=False, desc="pair tokenization"):
        if config.process_index == 0:
            shutil.rmtree(folder, ignore_errors=True)
            for name in ("train", "val"):
                rows = [encode_pair(renderer, pair) for pair in read_jsonl(pairs / f"{name}.jsonl")]
                Dataset.from_list(rows).save_to_disk(str(folder / name))
    return {name: load_from_disk(str(folder / name)) for name in ("train", "val")}


def run(params: Sections, merged: Path, pairs: Path, out: Path, checkpoints: Path) -> dict | None:
    align = params.align
    if not align.enabled:
        with atomic_dir(out) as tmp:
            write_json(tmp / "summary.json", {"enabled": False})
            write_json(tmp / headline.FILE, headline.align({"enabled": False}))
        log.info("align: off (align.enabled: false); later steps use %s", merged)
        return None
    return dpo(params, merged, pairs, out, checkpoints)


def dpo(params: Sections, merged: Path, pairs: Path, out: Path, checkpoints: Path) -> dict | None:
    """The step with align on. Its imports are here so the step costs no torch import when off (about 12 s)."""
    import torch
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from tunemake.models.precision import training_precision
    from tunemake.training.callbacks import Progress, StopOnSignal
    from tunemake.training.trainer import (
        check_shared,
        fingerprint,
        parameter_counts,
        resume_checkpoint,
        run_record,
        run_trainer,
        save_adapter_and_merged,
        tracking_callbacks,
    )

    align = params.align
    started = time.perf_counter()
    use_cores()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    config = dpo_config(align, checkpoints, world_size)
    inputs = (merged / "manifest.json", pairs / "train.jsonl", pairs / "val.jsonl")
    resume_from = resume_checkpoint(config, checkpoints, fingerprint(align, world_size, *inputs))
    check_shared(checkpoints)
    renderer = Renderer(fast_tokenizer(merged))
    data = pair_datasets(config, renderer, pairs, checkpoints / "pairs")
    if not len(data["train"]):
        raise StepError(
            f"align.enabled is true but {pairs / 'train.jsonl'} has no pairs: list preference files under "
            "pairs.sources in params.yaml (format: preference), or set align.enabled: false"
        )

    set_seed(align.seed)  # the adapter's initialisation draws random numbers before the Trainer seeds anything
    trainer = trainer_class()(
        model=load(merged, dtype=torch.float32),
        args=config,
        train_dataset=data["train"],
        eval_dataset=data["val"] if len(data["val"]) else None,
        processing_class=renderer.tokenizer,
        peft_config=lora_config(align.lora),
        callbacks=[
            Progress(checkpoints / "live", "align"),
            StopOnSignal(),
            *tracking_callbacks(align, "align", out, bool(resume_from)),
        ],
    )
    trainer.remove_callback(PrinterCallback)
    trainable, total = parameter_counts(trainer.model)
    log.info(
        "align: DPO (%s, beta %g) on %d pairs, %s trainable of %s parameters, %s, %d process(es)",
        "+".join(align.loss),
        align.beta,
        len(data["train"]),
        f"{trainable:,}",
        f"{total:,}",
        training_precision(align.precision),
        world_size,
    )
    run_trainer(trainer, resume_from, checkpoints)
    if not trainer.is_world_process_zero():
        return None
    with atomic_dir(out) as tmp:
        rows = save_adapter_and_merged(trainer, merged, tmp, params.merge.dtype)
        first, last = (rows["train"][i] if rows["train"] else {} for i in (0, -1))
        evals = rows["eval"]
        summary = {
            "enabled": True,
            "loss": align.loss,
            "beta": align.beta,
            "reference": f"{merged} with the adapter disabled (the SFT model)",
            "pairs": {name: len(split) for name, split in data.items()},
            "first": first,
            "last": last,
            "val_start": evals[0] if evals else None,
            "val_end": evals[-1] if evals else None,
            **run_record(trainer, align, resume_from, started, world_size),
        }
        write_json(tmp / "summary.json", summary)
        write_json(tmp / headline.FILE, headline.align(summary))
    if not align.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    log.info(
        "align: %d steps, loss %s -> %s, margin %s -> %s, %.0fs, peak memory %.0f MB",
        summary["steps"],
        first.get("loss"),
        last.get("loss"),
        first.get("rewards/margins"),
        last.get("rewards/margins"),
        summary["wall_seconds"],
        summary["peak_memory_mb"]["rss"],
    )
    return summary
