"""The `merge` section (tunemake.steps.merge)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


class MergeParams(Strict):
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the merged weights; auto = the base model's"
    )
