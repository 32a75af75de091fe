"""train: fine-tune the base model on the tokenized splits with TRL's SFTTrainer, by the method in train.method.

The loss is on the labels tokenize wrote (assistant tokens only); nothing is re-tokenized here. Checkpoints go to a
folder outside the output (--checkpoints) every train.checkpoint_steps; a re-run with the same inputs resumes from
the newest one, and a run whose parameters or data changed starts over. SIGTERM/SIGUSR1 save a checkpoint and exit
non-zero. Under `torchrun --nproc-per-node N` the same command trains data-parallel (DDP: gloo on CPU, NCCL on GPU).

Output: model/ (the adapter, or full weights for full/freeze, with the tokenizer and chat template), history.json,
plots/{train,eval}.tsv, summary.json and headline.json (its headline numbers, tunemake.evaluation.headline).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.evaluation import headline
from tunemake.models.precision import training_precision
from tunemake.models.weights import frozen_in_autocast_dtype, save_tokenizer
from tunemake.params import load as load_params
from tunemake.params.train import TrainParams
from tunemake.runtime import (
    BF16_PAYS,
    cpu_features,
    cpu_matmul_rates,
    use_cores,
)
from tunemake.training.callbacks import KeepBest, Progress, StopOnSignal, history, write_plots
from tunemake.training.loss import assistant_loss
from tunemake.training.methods import METHODS
from tunemake.training.trainer import (
    arguments,
    check_shared,
    fingerprint,
    parameter_counts,
    resume_checkpoint,
    run_record,
    run_trainer,
    tracking_callbacks,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output")
    parser.add_argument("--data", type=Path, required=True, help="the tokenize step's output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--checkpoints",
        type=Path,
        required=True,
        help="resumable checkpoints, outside --out so a killed run keeps them",
    )


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, train=TrainParams).train, args.base, args.data, args.out, args.checkpoints)


def trainer_class():
    from trl import SFTTrainer

    class AssistantLossTrainer(SFTTrainer):
        """SFTTrainer with `assistant_loss`. TRL's own fused head scores every position and is slow on CPU."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = assistant_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # num_items counts all ranks; DDP averages gradients
            return (loss, outputs) if return_outputs else loss

    return AssistantLossTrainer


def run(params: TrainParams, base: Path, data: Path, out: Path, checkpoints: Path) -> dict | None:
    """config, resume point, build, train, write outputs (only the main process writes them)."""
    started = time.perf_counter()
    use_cores()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    config = sft_config(params, checkpoints, world_size)
    resume_from = resume_point(config, params, base, data, checkpoints, world_size)
    hosts = check_shared(checkpoints)
    model, tokenizer = build(params, base, world_size)
    trainer, best = setup_trainer(config, params, model, tokenizer, data, out, checkpoints, bool(resume_from))
    run_trainer(trainer, resume_from, checkpoints)
    if not trainer.is_world_process_zero():
        return None
    summary = write_outputs(
        trainer, best, params, config, base, out, checkpoints, resume_from, world_size, hosts, started
    )
    if not params.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return summary


def sft_config(params: TrainParams, checkpoints: Path, world_size: int):
    from trl import SFTConfig

    return SFTConfig(
        **arguments(params, checkpoints, world_size),
        padding_free=params.padding_free,
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        max_length=None,  # tokenize already applied tokenize.max_length
        eval_strategy="steps" if params.eval_steps else "epoch",
        eval_steps=params.eval_steps,
        # Padding-free batches hold no pad tokens; padded ones are counted through their attention mask.
        include_num_input_tokens_seen="all" if params.padding_free else "non_padding",
    )


def resume_point(config, params: TrainParams, base: Path, data: Path, checkpoints: Path, world_size: int) -> str | None:
    return resume_checkpoint(
        config, checkpoints, fingerprint(params, world_size, base / "manifest.json", data / "token_stats.json")
    )


def build(params: TrainParams, base: Path, world_size: int):
    """The model to train (by train.method) and its tokenizer."""
    from transformers import AutoTokenizer, set_seed

    set_seed(params.seed)  # adapter initialisation draws random numbers before the Trainer seeds anything
    model = METHODS[params.method].build(base, params, torch.float32)  # float master weights; bf16/fp16 autocast
    if params.method == "lora":  # full and freeze save their frozen weights: those stay float32
        frozen_in_autocast_dtype(model, training_precision(params.precision))
    trainable, total = parameter_counts(model)
    log.info(
        "train: %s, %s trainable of %s parameters (%.2f%%), %s, %d process(es), effective batch %d",
        params.method,
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
        training_precision(params.precision),
        world_size,
        params.batch_size * params.gradient_accumulation * world_size,
    )
    if not torch.cuda.is_available() and params.precision == "auto":
        log.info("train: this CPU's matmul GFLOP/s %s (bf16 is taken from %.1fx fp32)", cpu_matmul_rates(), BF16_PAYS)
    return model, AutoTokenizer.from_pretrained(base)


def setup_trainer(
    config, params: TrainParams, model, tokenizer, data: Path, out: Path, checkpoints: Path, resumed: bool
):
    import datasets
    from transformers.trainer_callback import PrinterCallback

    datasets.disable_caching()  # TRL's dataset.map() must not write cache files into results/tokenized
    splits = datasets.load_from_disk(str(data / "dataset"))
    train_set, val_set = (splits[name].remove_columns("id") for name in ("train", "val"))
    best = KeepBest(checkpoints / "best", params.early_stopping_patience)
    trainer = trainer_class()(
        model=model,
        args=config,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        callbacks=[
            Progress(checkpoints / "live"),
            best,
            StopOnSignal(),
            *tracking_callbacks(params, "train", out, resumed),
        ],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, best


def write_outputs(
    trainer, best, params, config, base, out, checkpoints, resume_from, world_size, hosts, started
) -> dict:
    """model/ (best or last weights), history.json, plots/, summary.json and headline.json, atomically."""
    rows = history(trainer.state.log_history)
    best_weights = checkpoints / "best"
    best_info = json.loads((best_weights / "best.json").read_text()) if best_weights.is_dir() else None
    with atomic_dir(out) as tmp:
        if params.keep_best and best_info:
            shutil.copytree(best_weights, tmp / "model", ignore=shutil.ignore_patterns("best.json"))
        else:
            trainer.model.save_pretrained(tmp / "model", safe_serialization=True)
        save_tokenizer(trainer.processing_class, tmp / "model", base)
        write_json(tmp / "history.json", rows)
        write_plots(rows, tmp / "plots")
        summary = {
            "method": params.method,
            "adapter": METHODS[params.method].ADAPTER,
            "weights": "best" if params.keep_best and best_info else "last",
            "quantization": quantization(trainer.model),
            "batching": ("padding-free" if params.padding_free else "padded")
            + (", length-grouped" if params.group_by_length else ""),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "cpu": cpu_features(),
            "cpu_matmul_gflops": None if torch.cuda.is_available() else cpu_matmul_rates(),
            "threads": torch.get_num_threads(),
            "hosts": hosts,  # of each rank
            "distributed_backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "batch": {
                "per_process": params.batch_size,
                "gradient_accumulation": params.gradient_accumulation,
                "effective": params.batch_size * params.gradient_accumulation * world_size,
            },
            "learning_rate": {
                "configured": params.learning_rate,
                "scaling": params.lr_scaling,
                "used": config.learning_rate,
            },
            "stopped_early": best.stopped_early,
            "tokens_seen": trainer.state.num_input_tokens_seen,
            "first_loss": rows["train"][0]["loss"] if rows["train"] else None,
            "last_loss": rows["train"][-1]["loss"] if rows["train"] else None,
            "best": best_info,
            **run_record(trainer, params, resume_from, started, world_size),
        }
        write_json(tmp / "summary.json", summary)
        # The few numbers `dvc exp show` puts next to the held-out scores (dvc.yaml metrics,
        # tunemake.evaluation.headline).
        write_json(tmp / headline.FILE, headline.train(summary))
    log.info(
        "train: %d steps, loss %s -> %s, best val loss %s, %.0fs, peak memory %.0f MB",
        summary["steps"],
        summary["first_loss"],
        summary["last_loss"],
        best_info and best_info["val_loss"],
        summary["wall_seconds"],
        summary["peak_memory_mb"]["rss"],
    )
    return summary


def quantization(model) -> dict | None:
    config = getattr(model.config, "quantization_config", None)
    return config.to_dict() if hasattr(config, "to_dict") else config
