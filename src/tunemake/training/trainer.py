"""What the trainer steps (train, align, reinforce) share: TrainingArguments from their params, resuming from the
newest complete checkpoint of the same run, stopping on a signal, and the facts their summaries record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import torch

from tunemake.data.jsonl import write_json
from tunemake.errors import StepError
from tunemake.models.precision import training_precision
from tunemake.models.weights import save_merged, save_tokenizer
from tunemake.params.optimisation import Optimisation
from tunemake.runtime import DDP_TIMEOUT, git_commit, package_versions, peak_memory_mb, seconds
from tunemake.training.callbacks import StopOnSignal, history, write_plots

log = logging.getLogger("tunemake.steps.train")

LR_SCALING = {"none": lambda n: 1.0, "linear": lambda n: float(n), "sqrt": lambda n: n**0.5}


class Interrupted(StepError):
    """Stopped by a signal after saving a checkpoint; exits 128 + the signal number, as a killed process would."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def arguments(params: Optimisation, checkpoints: Path, world_size: int) -> dict:
    """The TrainingArguments both trainers take from the params they share (see tunemake.params.optimisation)."""
    mode = training_precision(params.precision)
    return dict(
        output_dir=str(checkpoints),
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.gradient_accumulation,
        learning_rate=params.learning_rate * LR_SCALING[params.lr_scaling](world_size),
        lr_scheduler_type=params.lr_scheduler,
        optim=params.optimizer,
        warmup_steps=params.warmup_ratio,  # a float below 1 is a fraction of the total steps
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        seed=params.seed,
        data_seed=params.seed,
        gradient_checkpointing=params.gradient_checkpointing,
        bf16=mode == "bf16",  # explicit: TRL's DPOConfig defaults bf16 to true
        fp16=mode == "fp16",
        use_cpu=not torch.cuda.is_available(),
        eval_on_start=True,  # the val loss before training: the first point of the curve
        prediction_loss_only=True,  # evaluation needs the loss only; do not collect logits
        save_strategy="steps",
        save_steps=params.checkpoint_steps,
        save_total_limit=2,
        logging_steps=params.log_steps,
        logging_first_step=True,
        report_to=[t for t in params.report_to if t != "dvclive"] or "none",  # dvclive: tracking_callbacks
        disable_tqdm=True,  # Progress logs a bar line per logging step instead, which reads well in a log file
        ddp_find_unused_parameters=False,
        # gloo/NCCL: a collective whose peer is gone (a node lost mid-run) fails after this long instead of hanging.
        ddp_timeout=seconds(DDP_TIMEOUT),
    )


_SET_HERE: dict[str, str] = {}  # environment values tracking_callbacks set, which the next step may replace


def _default_env(name: str, value: str) -> None:
    """Set `name` unless the user did: train then align in one process each get their own folder."""
    if os.environ.get(name) in (None, _SET_HERE.get(name)):
        os.environ[name] = _SET_HERE[name] = value


def tracking_callbacks(params: Optimisation, step: str, out: Path, resumed: bool) -> list:
    """The trackers of params.report_to write beside results/, never into it (tensorboard's event files and wandb's
    and mlflow's runs carry wall-clock times, so two identical runs would no longer give identical outputs):
    tensorboard, wandb (an offline run for `wandb sync`) and mlflow (a SQLite store, unless MLFLOW_TRACKING_URI
    names a server) to tracking/<step>/, dvclive to dvclive/<step>/ with its dvc.yaml in dvclive/, where
    `dvc exp show` and `dvc plots show` find it (not the repository's own dvc.yaml, dvclive's default), making no
    DVC experiment of its own. A sweep point's step (out = results/sweep/KEY=VALUE/<step>) writes to
    sweep/KEY=VALUE/<step> in each, so points training side by side never share a folder. Returns the callbacks the
    Trainer cannot make itself. Credentials (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN...) are read by each library from
    the environment, never from params."""
    name = f"sweep/{out.parent.name}/{step}" if out.parent.parent.name == "sweep" else step
    _default_env("TENSORBOARD_LOGGING_DIR", f"tracking/{name}/tensorboard")
    _default_env("WANDB_DIR", f"tracking/{name}")  # wandb writes <dir>/wandb/run-... (offline-run-...)
    _default_env("WANDB_PROJECT", "tunemake")
    _default_env("MLFLOW_TRACKING_URI", f"sqlite:///tracking/{name}/mlflow.db")
    _default_env("MLFLOW_EXPERIMENT_NAME", "tunemake")
    if "wandb" in params.report_to:
        Path(os.environ["WANDB_DIR"], "wandb").mkdir(parents=True, exist_ok=True)
    if "mlflow" in params.report_to:
        Path(f"tracking/{name}").mkdir(parents=True, exist_ok=True)
    if "dvclive" not in params.report_to:
        return []
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    live = None
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under DDP, as the Trainer's own trackers do
        folder = Path("dvclive", name)
        live = Live(dir=str(folder), resume=resumed, save_dvc_exp=False, dvcyaml=str(folder.parent / "dvc.yaml"))
    return [DVCLiveCallback(live=live)]


def reset_if_stale(checkpoints: Path, print_: str) -> None:
    stamp = checkpoints / "fingerprint.txt"
    if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != print_):
        log.warning("%s holds checkpoints of other parameters or data; starting over", checkpoints)
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(print_)


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that was fully written: the Trainer writes trainer_state.json last, so a process
    killed while saving leaves a folder without it, which is skipped (and later replaced)."""
    done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def resume_checkpoint(config, checkpoints: Path, print_: str) -> str | None:
    """The newest complete checkpoint of this very run, after clearing checkpoints of other parameters or data."""
    with config.main_process_first(local=False, desc="checkpoint check"):
        if config.process_index == 0:
            reset_if_stale(checkpoints, print_)
    resume_from = last_complete_checkpoint(checkpoints)
    if resume_from:
        log.info("resuming from %s", resume_from)
    return resume_from


SHARED_MARKER = ".shared-by-all-nodes"


def check_shared(folder: Path, wait: float = 10.0) -> list[str]:
    """Every process must read what rank 0 writes in `folder`: a run resumes, on every node, from the checkpoints
    rank 0 saved there, and rank 0's outputs are the step's. Rank 0 writes a marker, the others look for it (for up
    to `wait` seconds: a network filesystem may show a new file late), and all fail with the folder's name when one
    does not see it. Returns the host of each rank; a single process just its own host."""
    import torch.distributed as dist

    host = socket.gethostname()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [host]
    rank = dist.get_rank()
    marker = folder / SHARED_MARKER
    token = [uuid.uuid4().hex if rank == 0 else None]
    folder.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        marker.write_text(f"{token[0]} written by rank 0 on {host}\n")
    dist.broadcast_object_list(token, src=0)  # after the write: rank 0 got here
    deadline = time.monotonic() + wait
    while not (seen := marker.is_file() and marker.read_text().split()[:1] == token) and time.monotonic() < deadline:
        time.sleep(0.5)
    ranks: list = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, (host, seen))
    if rank == 0:
        marker.unlink(missing_ok=True)
    blind = [f"rank {r} on {h}" for r, (h, ok) in enumerate(ranks) if not ok]
    if blind:
        raise StepError(
            f"{folder.resolve()} is not shared between the nodes: rank 0 on {ranks[0][0]} wrote {marker.name} there, and "
            f"{', '.join(blind)} cannot see it. Every node resumes from the checkpoints rank 0 saves there: put "
            f"it (and the run's results/) on a filesystem all nodes mount (NFS, Lustre, a ReadWriteMany "
            "volume), the same path on each."
        )
    log.info(
        "%s is shared by all %d processes (hosts %s)", folder, len(ranks), ", ".join(sorted({h for h, _ in ranks}))
    )
    return [h for h, _ in ranks]


def run_trainer(trainer, resume_from: str | None, checkpoints: Path) -> None:
    stop = next(c for c in trainer.callback_handler.callbacks if isinstance(c, StopOnSignal))
    trainer.train(resume_from_checkpoint=resume_from)
    if stop.received:
        raise Interrupted(
            f"stopped by signal {stop.received} at step {trainer.state.global_step}; the checkpoint is in "
            f"{checkpoints}. Run the same command again to resume.",
            stop.received,
        )


def optimizer_name(optimizer) -> str:
    """The class that stepped, past accelerate's wrapper: e.g. bitsandbytes.optim.adamw.AdamW for adamw_8bit."""
    inner = type(getattr(optimizer, "optimizer", optimizer))
    return f"{inner.__module__}.{inner.__qualname__}"


def parameter_counts(model) -> tuple[int, int]:
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())


def fingerprint(params: Optimisation, world_size: int, *files: Path) -> str:
    """What a step's checkpoints were made from: its settings (a tracker never changes the weights), the process
    count and its input files. Resuming is only safe when all of it is unchanged."""
    parts = [params.model_dump_json(exclude={"report_to"}), str(world_size)]
    parts += [file.read_text() for file in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_record(trainer, params: Optimisation, resume_from: str | None, started: float, world_size: int) -> dict:
    """What every trainer step's summary.json says about the run itself, beside the step's own fields: parameters,
    precision, optimizer, processes, steps, where it resumed, time, memory, versions and its settings."""
    trainable, total = parameter_counts(trainer.model)
    return {
        "parameters": {"trainable": trainable, "total": total, "trainable_share": round(trainable / total, 6)},
        "precision": training_precision(params.precision),
        "optimizer": optimizer_name(trainer.optimizer),
        "processes": world_size,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "resumed_from_step": int(Path(resume_from).name.split("-")[-1]) if resume_from else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_memory_mb": peak_memory_mb(),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "config": params.model_dump(),
    }


def save_adapter_and_merged(trainer, start: Path, tmp: Path, merge_dtype: str) -> dict:
    """What align and reinforce write alike: the adapter with its tokenizer, the model it merges into (start + adapter,
    in merge.dtype), history.json and plots/. Returns the history."""
    trainer.model.save_pretrained(tmp / "adapter", safe_serialization=True)
    save_tokenizer(trainer.processing_class, tmp / "adapter", start)
    save_merged(start, tmp / "adapter", tmp / "model", merge_dtype)
    rows = history(trainer.state.log_history)
    write_json(tmp / "history.json", rows)
    write_plots(rows, tmp / "plots")
    return rows
