"""train: fine-tune the base model on the tokenized splits with TRL's SFTTrainer, by the method in train.method.

The loss is on the labels tokenize wrote (assistant tokens only); nothing is re-tokenized here. Checkpoints go to a
folder outside the output (--checkpoints) every train.checkpoint_steps; a re-run with the same inputs resumes from
the newest one, and a run whose parameters or data changed starts over. SIGTERM/SIGUSR1 save a checkpoint and exit
non-zero. Under `torchrun --nproc-per-node N` the same command trains data-parallel (DDP: gloo on CPU, NCCL on GPU).

Output: model/ (the adapter, or full weights for full/freeze, with the tokenizer and chat template), history.json,
plots/{train,eval}.tsv, summary.json and metrics.json (its headline numbers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from tunemake.callbacks import KeepBest, Progress, StopOnSignal, history, write_plots
from tunemake.errors import StepError
from tunemake.jsonl import atomic_dir, write_json
from tunemake.methods import METHODS
from tunemake.params import TrainParams

log = logging.getLogger(__name__)

PACKAGES = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "tunemake"]
IGNORE = -100  # the label tokenize writes on untrained tokens; cross_entropy skips it
LR_SCALING = {"none": lambda n: 1.0, "linear": lambda n: float(n), "sqrt": lambda n: n**0.5}


class Interrupted(StepError):
    """Stopped by a signal after saving a checkpoint; exits 128 + the signal number, as a killed process would."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def assistant_loss(model, inputs: dict, num_items_in_batch=None):
    """Next-token loss on the labelled (assistant) positions, projecting only those through the output head.

    The data is about 85% prompt, system and tool text, so scoring every position through a 49k-word head wastes
    most of it; `logits_to_keep` picks the positions instead. Same loss as the model's own, to float rounding.
    """
    labels = inputs.pop("labels")
    keep = (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(1)  # positions whose next token is trained
    outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
    targets = labels[:, keep + 1]
    total = torch.nn.functional.cross_entropy(outputs.logits.flatten(0, 1).float(), targets.flatten(),
                                              ignore_index=IGNORE, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE).sum()
    return total / torch.as_tensor(count).clamp(min=1), outputs


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


def precision(name: str) -> str:
    if name != "auto":
        if name != "fp32" and not torch.cuda.is_available():
            raise StepError(f"train.precision is {name} but there is no GPU here; use auto or fp32")
        return name
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def fingerprint(params: TrainParams, base: Path, data: Path, world_size: int) -> str:
    """What the checkpoints were made from: resuming is only safe when all of it is unchanged."""
    parts = [params.model_dump_json(), str(world_size)]
    parts += [(base / "manifest.json").read_text(), (data / "token_stats.json").read_text()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def reset_if_stale(checkpoints: Path, print_: str) -> None:
    stamp = checkpoints / "fingerprint.txt"
    if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != print_):
        log.warning("train: %s holds checkpoints of other parameters or data; starting over", checkpoints)
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(print_)


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that was fully written: the Trainer writes trainer_state.json last, so a process
    killed while saving leaves a folder without it, which is skipped (and later replaced)."""
    done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def run(params: TrainParams, base: Path, data: Path, out: Path, checkpoints: Path) -> dict | None:
    import datasets
    from transformers import AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig

    datasets.disable_caching()  # TRL's dataset.map() must not write cache files into results/tokenized
    started = time.perf_counter()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    mode = precision(params.precision)
    learning_rate = params.learning_rate * LR_SCALING[params.lr_scaling](world_size)
    padding_free = params.padding_free
    splits = datasets.load_from_disk(str(data / "dataset"))
    train_set, val_set = (splits[name].remove_columns("id") for name in ("train", "val"))

    config = SFTConfig(
        output_dir=str(checkpoints),
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.gradient_accumulation,
        learning_rate=learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,  # a float below 1 is a fraction of the total steps
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        seed=params.seed,
        data_seed=params.seed,
        gradient_checkpointing=params.gradient_checkpointing,
        bf16=mode == "bf16",
        fp16=mode == "fp16",
        use_cpu=not torch.cuda.is_available(),
        padding_free=padding_free,
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        max_length=None,  # tokenize already applied tokenize.max_length
        eval_strategy="steps" if params.eval_steps else "epoch",
        eval_steps=params.eval_steps,
        eval_on_start=True,  # the val loss before training: the first point of the curve
        prediction_loss_only=True,  # evaluation needs the loss only; do not collect logits
        save_strategy="steps",
        save_steps=params.checkpoint_steps,
        save_total_limit=2,
        logging_steps=params.log_steps,
        logging_first_step=True,
        # Padding-free batches hold no pad tokens; padded ones are counted through their attention mask.
        include_num_input_tokens_seen="all" if padding_free else "non_padding",
        report_to="none",
        disable_tqdm=True,  # Progress logs a bar line per logging step instead, which reads well in a log file
        ddp_find_unused_parameters=False,
    )
    with config.main_process_first(local=False, desc="checkpoint check"):
        if config.process_index == 0:
            reset_if_stale(checkpoints, fingerprint(params, base, data, world_size))
    resume_from = last_complete_checkpoint(checkpoints)
    if resume_from:
        log.info("train: resuming from %s", resume_from)

    method = METHODS[params.method]
    set_seed(params.seed)  # adapter initialisation draws random numbers before the Trainer seeds anything
    model = method.build(base, params, torch.float32)  # float master weights; bf16/fp16 run under autocast
    tokenizer = AutoTokenizer.from_pretrained(base)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("train: %s, %s trainable of %s parameters (%.2f%%), %s, %d process(es), effective batch %d",
             params.method, f"{trainable:,}", f"{total:,}", 100 * trainable / total, mode, world_size,
             params.batch_size * params.gradient_accumulation * world_size)

    best, stop = KeepBest(checkpoints / "best", params.early_stopping_patience), StopOnSignal()
    trainer = trainer_class()(model=model, args=config, train_dataset=train_set, eval_dataset=val_set,
                         processing_class=tokenizer, callbacks=[Progress(checkpoints / "live"), best, stop])
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume_from)
    if stop.received:
        raise Interrupted(f"stopped by signal {stop.received} at step {trainer.state.global_step}; the checkpoint is in "
                          f"{checkpoints}. Run the same command again to resume.", stop.received)
    if not trainer.is_world_process_zero():
        return None

    rows = history(trainer.state.log_history)
    best_weights = checkpoints / "best"
    best_info = json.loads((best_weights / "best.json").read_text()) if best_weights.is_dir() else None
    with atomic_dir(out) as tmp:
        if params.keep_best and best_info:
            shutil.copytree(best_weights, tmp / "model", ignore=shutil.ignore_patterns("best.json"))
        else:
            trainer.model.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        write_json(tmp / "history.json", rows)
        write_plots(rows, tmp / "plots")
        summary = {
            "method": params.method,
            "adapter": method.ADAPTER,
            "weights": "best" if params.keep_best and best_info else "last",
            "parameters": {"trainable": trainable, "total": total, "trainable_share": round(trainable / total, 6)},
            "quantization": quantization(model),
            "precision": mode,
            "batching": ("padding-free" if padding_free else "padded") + (", length-grouped" if params.group_by_length else ""),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "processes": world_size,
            "distributed_backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "batch": {"per_process": params.batch_size, "gradient_accumulation": params.gradient_accumulation,
                      "effective": params.batch_size * params.gradient_accumulation * world_size},
            "learning_rate": {"configured": params.learning_rate, "scaling": params.lr_scaling, "used": learning_rate},
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "resumed_from_step": int(Path(resume_from).name.split("-")[-1]) if resume_from else None,
            "stopped_early": best.stopped_early,
            "tokens_seen": trainer.state.num_input_tokens_seen,
            "first_loss": rows["train"][0]["loss"] if rows["train"] else None,
            "last_loss": rows["train"][-1]["loss"] if rows["train"] else None,
            "best": best_info,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_memory_mb": peak_memory_mb(),
            "packages": package_versions(),
            "git_commit": git_commit(),
            "config": params.model_dump(),
        }
        write_json(tmp / "summary.json", summary)
        # The few numbers `dvc exp show` puts next to the held-out scores (dvc.yaml metrics).
        headline = {"trainable_parameters": trainable, "trainable_share": summary["parameters"]["trainable_share"],
                    "best_val_loss": best_info and best_info["val_loss"], "steps": summary["steps"],
                    "wall_seconds": summary["wall_seconds"], "peak_rss_mb": summary["peak_memory_mb"]["rss"]}
        write_json(tmp / "metrics.json", headline)
    if not params.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("train: %d steps, loss %s -> %s, best val loss %s, %.0fs, peak memory %.0f MB", summary["steps"],
             summary["first_loss"], summary["last_loss"], best_info and best_info["val_loss"], summary["wall_seconds"],
             summary["peak_memory_mb"]["rss"])
    return summary


def quantization(model) -> dict | None:
    config = getattr(model.config, "quantization_config", None)
    return config.to_dict() if hasattr(config, "to_dict") else config


def peak_memory_mb() -> dict:
    memory = {"rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux reports KiB
    if torch.cuda.is_available():
        memory["gpu_allocated"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return memory


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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty.strip() else "")
