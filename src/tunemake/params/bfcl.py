"""The `bfcl` section: the Berkeley Function Calling Leaderboard's rows (tunemake.steps.bfcl)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict

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
