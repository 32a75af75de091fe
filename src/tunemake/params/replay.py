"""The `replay` section: the base's own answers for prepare.replay (tunemake.steps.replay)."""

from __future__ import annotations

from pydantic import Field

from tunemake.params import Strict


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
        0.7, ge=0, description="0: the base's greedy answers; above 0: sampled, then top_p (inference.Nucleus)"
    )
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling when temperature > 0")
    seed: int = Field(0, description="sampled answers: each prompt draws from a generator seeded with seed + its index")
