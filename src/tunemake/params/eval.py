"""The `eval` section (tunemake.steps.evaluate, tunemake.steps.baseline)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


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
