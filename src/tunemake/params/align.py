"""The `align` section: DPO after SFT (tunemake.steps.align)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunemake.params.optimisation import LoraParams, Optimisation

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "sft")  # TRL DPOConfig.loss_type values offered here


class AlignParams(Optimisation):
    """DPO on the merged SFT model with a fresh LoRA (tunemake.steps.align); its reference is that model, adapters off."""

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
