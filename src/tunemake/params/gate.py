"""The `gate` section: what the verdict requires (tunemake.steps.gate)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


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
