"""The `reinforce` section: GRPO after SFT (tunemake.steps.reinforce), and the user reward functions it names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from tunemake.params.optimisation import LoraParams, Optimisation

REWARDS = ("tool_call", "no_call")  # tunemake.training.rewards' own; anything else is a user's `module:function`
# What the reinforce step passes every reward function, by keyword (TRL's GRPOTrainer and the step's columns)


REWARD_ARGUMENTS = (
    "prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
    "id", "kind", "reference", "reference_calls", "tools",
)  # fmt: skip


def load_reward(spec: str):
    """A user's reward function named `module:function`, imported (the project root first on the path) and checked
    to take the reinforce step's arguments by keyword; ValueError naming what is wrong otherwise."""
    import importlib
    import inspect
    import os
    import sys

    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(
            f"reward {spec!r}: use one of {', '.join(REWARDS)} or a function as module:function "
            "(e.g. my_rewards:brevity)"
        )
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"reward {spec!r}: no module {err.name!r} (importable from the project root or installed?)"
        ) from None
    finally:
        sys.path.remove(os.getcwd())
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"reward {spec!r}: module {module_name} has no function {name!r}")
    try:
        inspect.signature(function).bind(**dict.fromkeys(REWARD_ARGUMENTS))
    except TypeError as err:
        raise ValueError(
            f"reward {spec!r}: wrong signature {name}{inspect.signature(function)} ({err}); write it as "
            f"def {name}(prompts, completions, **kwargs) -> list[float | None], one score per completion"
        ) from None
    return function


def reward_files(specs: list[str]) -> list[str]:
    """The files of the user reward modules among `specs` that lie inside the project (the current directory), as
    paths relative to it: inputs of the reinforce step, so editing one re-runs it."""
    import importlib.util
    import os
    import sys

    root, files = Path.cwd(), []
    sys.path.insert(0, os.getcwd())
    try:
        for spec in specs:
            found = importlib.util.find_spec(spec.partition(":")[0]) if spec not in REWARDS else None
            origin = Path(found.origin).resolve() if found and found.origin else None
            if origin and origin.is_relative_to(root):
                files.append(str(origin.relative_to(root)))
    finally:
        sys.path.remove(os.getcwd())
    return files


def _reward(spec: str) -> str:
    if spec not in REWARDS:
        load_reward(spec)
    return spec


class ReinforceParams(Optimisation):
    """GRPO after SFT (and DPO when align ran) with a fresh LoRA and verifiable rewards (tunemake.steps.reinforce). Each
    field names the GRPOConfig argument it sets."""

    enabled: bool = Field(
        False, description="run GRPO after SFT / DPO (tunemake's own); false: the pipeline ships the model before it"
    )
    rewards: list[Annotated[str, AfterValidator(_reward)]] = Field(
        list(REWARDS),
        min_length=1,
        description="-> reward_funcs: tool_call (the evaluate checker, partial credit), no_call (restraint where the "
        "reference answers in words), or your own as module:function (checked when params load)",
    )
    reward_weights: list[float] | None = Field(None, description="-> reward_weights, one per reward; null = all 1")
    prompts: list[Literal["tool_call", "no_call", "text"]] = Field(
        ["tool_call", "no_call"],
        min_length=1,
        description="which train rows prompt, by their reference's answer kind (tunemake.data.chat.answer_kind); the "
        "built-in rewards score tool_call and no_call rows only",
    )
    num_generations: int = Field(4, ge=2, description="-> num_generations: completions sampled per prompt (a group)")
    max_completion_length: int = Field(96, gt=0, description="-> max_completion_length: tokens per completion")
    temperature: float = Field(1.0, gt=0, description="-> temperature of the sampled completions")
    beta: float = Field(
        0.04, ge=0, description="-> beta: KL penalty towards the starting model (adapter off); 0 = none, no ref pass"
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = Field(
        "dapo", description="-> loss_type: how token losses are aggregated (TRL's GRPOConfig)"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="-> scale_rewards: divide advantages by the group's reward std, the batch's, or not"
    )
    vllm: Literal["auto", "on", "off"] = Field(
        "auto",
        description="-> use_vllm (colocate mode): auto = on a GPU when vllm is installed; completions are otherwise "
        "sampled with transformers' generate",
    )
    lora: LoraParams = LoraParams(r=8, alpha=16, dropout=0.0)
    max_steps: int | None = Field(100, gt=0, description="-> max_steps; if set, overrides epochs")
    batch_size: int = Field(
        8, gt=0, description="-> per_device_train_batch_size: completions per forward pass (prompts x num_generations)"
    )
    learning_rate: float = Field(5e-5, gt=0, description="-> learning_rate, for one process; see lr_scaling")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "constant", description="-> lr_scheduler_type"
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="-> warmup_steps (a fraction below 1 of the total steps)")

    @model_validator(mode="after")
    def _groups_fit(self) -> "ReinforceParams":
        if (self.batch_size * self.gradient_accumulation) % self.num_generations:
            raise ValueError(
                f"batch_size x gradient_accumulation ({self.batch_size} x {self.gradient_accumulation}) must be a "
                f"multiple of num_generations ({self.num_generations}): each prompt's completions form one group"
            )
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards")
        return self
