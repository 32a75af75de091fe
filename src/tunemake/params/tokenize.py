"""The `tokenize` section (tunemake.steps.tokenize)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunemake.params import Strict


class TokenizeParams(Strict):
    max_length: int = Field(1024, gt=8)
    overlong: Literal["drop", "truncate", "error"] = "truncate"
