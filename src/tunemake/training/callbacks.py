"""Trainer callbacks for the train step: progress in the log, live metric files, best weights, and stopping on a signal.

Everything a callback decides is derived from `state.log_history`, which the Trainer saves in every checkpoint and
restores on resume, so a resumed run reports, keeps the best weights and stops early exactly as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import TrainerCallback

from tunemake.data.jsonl import atomic_dir

log = logging.getLogger("tunemake.steps.train")

TRAIN_COLUMNS = ["step", "epoch", "loss", "grad_norm", "learning_rate", "tokens_seen", "tokens_per_second"]
EVAL_COLUMNS = ["step", "epoch", "val_loss"]
# What TRL's DPOTrainer logs besides the loss (align): implicit rewards beta * log(policy / reference) per answer
PREFERENCE = ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]
# What TRL's GRPOTrainer logs (reinforce): the summed reward and its spread, each reward function's mean and std
# (rewards/NAME/mean, rewards/NAME/std, found by prefix), the KL to the starting model, the completions' length
REINFORCEMENT = ["reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "completions/mean_length"]
REINFORCEMENT += ["completions/clipped_ratio"]


def extra_keys(entry: dict) -> list[str]:
    """The alignment and reinforcement metrics in a log entry, in a stable order."""
    per_reward = sorted(k for k in entry if k.startswith("rewards/") and k.endswith(("/mean", "/std")))
    return [k for k in PREFERENCE + REINFORCEMENT if k in entry] + per_reward


def history(log_history: list[dict]) -> dict[str, list[dict]]:
    """The Trainer's log history as two tables: one row per logging step, one per evaluation."""
    train, evals = [], []
    for entry in log_history:
        if "loss" in entry:
            row = {
                "step": entry["step"],
                "epoch": entry.get("epoch"),
                "loss": entry["loss"],
                "grad_norm": entry.get("grad_norm"),
                "learning_rate": entry.get("learning_rate"),
                "tokens_seen": entry.get("num_input_tokens_seen", entry.get("num_tokens")),  # GRPO: num_tokens
                "tokens_per_second": entry.get("tokens_per_second"),
                **{key: entry[key] for key in extra_keys(entry)},
            }
            train.append(row)
        elif "eval_loss" in entry:
            evals.append(
                {
                    "step": entry["step"],
                    "epoch": entry.get("epoch"),
                    "val_loss": entry["eval_loss"],
                    **{key: entry[f"eval_{key}"] for key in PREFERENCE if f"eval_{key}" in entry},
                }
            )
    return {"train": train, "eval": evals}


def write_plots(rows: dict[str, list[dict]], folder: Path) -> None:
    """train.tsv and eval.tsv: files `dvc plots show` draws (x: step)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, columns in (("train", TRAIN_COLUMNS), ("eval", EVAL_COLUMNS)):
        columns = columns + list(dict.fromkeys(key for row in rows[name] for key in extra_keys(row)))
        with open(folder / f"{name}.tsv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t")
            writer.writeheader()
            writer.writerows(rows[name])


REINFORCEMENT_LINE = [("reward", "reward", 3), ("kl", "kl", 4), ("length", "completions/mean_length", 1)]


class Progress(TrainerCallback):
    """A progress bar line (step, loss, tokens/s, ETA) in the log at every logging step, and live metric files."""

    def __init__(self, live_dir: Path, step: str = "train"):
        self.live_dir, self.step = live_dir, step

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.first_step = state.global_step
        self.last_tokens = state.num_input_tokens_seen
        self.step_seconds = 0.0  # time inside training steps only, so evaluations do not dilute tokens/s

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds += time.perf_counter() - self.step_started

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        if "loss" in logs:
            tokens = state.num_input_tokens_seen
            rate = (tokens - self.last_tokens) / max(self.step_seconds, 1e-9)
            self.last_tokens, self.step_seconds = tokens, 0.0
            state.log_history[-1]["tokens_per_second"] = round(rate, 1)  # saved with the checkpoint
            bar = tqdm.format_meter(
                state.global_step,
                state.max_steps,
                now - self.started,
                initial=self.first_step,
                unit="step",
                ncols=100,
                postfix=f"loss={logs['loss']:.4f}, "
                + (f"margin={logs['rewards/margins']:.3f}, " if "rewards/margins" in logs else "")
                + "".join(
                    f"{label}={logs[key]:.{digits}f}, "
                    for label, key, digits in REINFORCEMENT_LINE
                    if logs.get(key) is not None
                )
                + f"{rate:.0f} tok/s",
            )
            log.info("%s %s", self.step, bar)
        elif "eval_loss" in logs:
            margin = f", margin {logs['eval_rewards/margins']:.3f}" if "eval_rewards/margins" in logs else ""
            log.info("%s step %d: val loss %.4f%s", self.step, state.global_step, logs["eval_loss"], margin)
        write_plots(history(state.log_history), self.live_dir)


class KeepBest(TrainerCallback):
    """Saves the weights with the lowest val loss so far to `folder`; stops after `patience` evaluations without one."""

    def __init__(self, folder: Path, patience: int | None):
        self.folder, self.patience = folder, patience
        self.stopped_early = False

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        losses = [(e["step"], e["eval_loss"]) for e in state.log_history if "eval_loss" in e]
        best_step, best_loss = min(losses, key=lambda item: item[1])
        if best_step == state.global_step and state.is_world_process_zero:
            with atomic_dir(self.folder) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                (tmp / "best.json").write_text(json.dumps({"step": best_step, "val_loss": best_loss}))
        since_best = sum(1 for step, _ in losses if step > best_step)
        if self.patience and since_best >= self.patience:
            log.info(
                "train: early stop at step %d: val loss has not improved on %.4f (step %d) for %d evaluations",
                state.global_step,
                best_loss,
                best_step,
                since_best,
            )
            self.stopped_early = True
            control.should_training_stop = True


class StopOnSignal(TrainerCallback):
    """SIGTERM or SIGUSR1 (what SLURM and Kubernetes send before a kill): save a checkpoint at the end of the step and stop.

    Under DDP all ranks must stop at the same step, so the flag is max-reduced across processes every step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.received = signum

    def on_step_end(self, args, state, control, **kwargs):
        flag = torch.tensor([self.received or 0], device=args.device)
        if args.world_size > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item():
            self.received = int(flag.item())
            log.warning(
                "train: got %s at step %d: saving a checkpoint and stopping",
                signal.Signals(self.received).name,
                state.global_step,
            )
            control.should_save = True
            control.should_training_stop = True
