"""What the trainer sections share (train, align, reinforce): the optimiser's settings and a LoRA adapter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


class LoraParams(Strict):
    r: int = Field(16, gt=0, description="adapter rank")
    alpha: float = Field(32, gt=0, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="above 0 PEFT runs a dropout copy of every adapted layer's input (slower)"
    )
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' or module names such as [q_proj, v_proj]"
    )
    use_dora: bool = Field(False, description="-> LoraConfig.use_dora: weight-decomposed adapters (DoRA)")
    use_rslora: bool = Field(False, description="-> LoraConfig.use_rslora: scale updates by alpha / sqrt(r)")


class Optimisation(Strict):
    """What every trainer step shares (train, align, reinforce). Each field names the TRL / transformers
    TrainingArguments argument it sets, so a user who knows those finds the same knob here."""

    epochs: float = Field(1, gt=0, description="-> num_train_epochs")
    max_steps: int | None = Field(None, gt=0, description="-> max_steps; if set, overrides epochs")
    batch_size: int = Field(4, gt=0, description="-> per_device_train_batch_size (and per_device_eval_batch_size)")
    gradient_accumulation: int = Field(1, gt=0, description="-> gradient_accumulation_steps")
    learning_rate: float = Field(1e-3, gt=0, description="-> learning_rate, for one process; see lr_scaling")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="with N processes multiply learning_rate by 1, N or sqrt(N) (tunemake's own)"
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="-> lr_scheduler_type"
    )
    optimizer: Literal[
        "adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd"
    ] = Field(
        "adamw_torch_fused",
        description="-> optim; the 8-bit and paged ones are bitsandbytes' (paged memory needs a GPU: on CPU they "
        "run unpaged)",
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="-> warmup_steps (a fraction below 1 of the total steps)")
    weight_decay: float = Field(0.0, ge=0, description="-> weight_decay")
    max_grad_norm: float = Field(1.0, gt=0, description="-> max_grad_norm")
    seed: int = Field(42, description="-> seed and data_seed (also seeds the adapter's initialisation)")
    gradient_checkpointing: bool = Field(False, description="-> gradient_checkpointing")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="-> bf16 / fp16; auto = bf16 on a GPU that supports it, else fp16 on GPU; on a CPU bf16 autocast "
        "where it has AVX-512 BF16 or AMX and bf16 matmuls measure at least 1.3x fp32's rate, else fp32",
    )
    log_steps: int = Field(1, gt=0, description="-> logging_steps")
    report_to: list[Literal["dvclive", "tensorboard", "wandb", "mlflow"]] = Field(
        [],
        description="-> report_to: trackers that get the training curves: dvclive (dvclive/<step>/, shown by dvc exp "
        "show), tensorboard, wandb and mlflow (tracking/<step>/; wandb online unless WANDB_MODE=offline, mlflow to "
        "tracking/<step>/mlflow.db unless MLFLOW_TRACKING_URI names a server); credentials come from the environment "
        "(WANDB_API_KEY, MLFLOW_TRACKING_TOKEN...), never params",
    )
    checkpoint_steps: int = Field(10, gt=0, description="-> save_steps: a resumable checkpoint every N steps")
    keep_checkpoints: bool = Field(False, description="keep the checkpoints after a successful run (tunemake's own)")
