"""The `train` section: SFT (tunemake.steps.train)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tunemake.params import Strict, registered
from tunemake.params.optimisation import LoraParams, Optimisation

Method = Annotated[str, registered("training.methods", "method")]


class QloraParams(Strict):
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = Field(True, description="also quantize the quantization constants (about 0.4 bit/param saved)")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 on a GPU that supports it, float32 on CPU"
    )


class FreezeParams(Strict):
    layers: int = Field(2, gt=0, description="train the last N transformer blocks")
    lm_head: bool = Field(True, description="also train the output head (with tied weights: the embeddings too)")


class TrainParams(Optimisation):
    method: Method = Field("lora", description="a module in tunemake/training/methods/: lora, qlora, full, freeze")
    epochs: float = Field(2, gt=0, description="-> num_train_epochs")
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
