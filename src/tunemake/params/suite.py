"""The `suite` section: the regression suite's prompts (tunemake.steps.suite)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


class SuiteParams(Strict):
    prompts: str | None = Field(
        None, description="your own JSONL of prompts that must keep working (tunemake.evaluation.general)"
    )
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
