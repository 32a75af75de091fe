"""The `prepare` section: sources, split and replay share (tunemake.steps.prepare)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tunemake.params import Strict
from tunemake.params.sources import SourceParams, unique_labels


class SplitRatios(Strict):
    train: float = Field(0.8, gt=0)
    val: float = Field(0.1, gt=0)
    test: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitRatios":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, they sum to {total:g}")
        return self


class PrepareParams(Strict):
    sources: list[SourceParams] = Field(min_length=1)
    split: SplitRatios = SplitRatios()
    seed: int = 42
    stratify_by: str | None = Field("source", description="meta field whose values each split shares in proportion")
    group_by: str | None = Field(None, description="meta field whose rows never straddle splits")
    dedup: bool = True
    strict: bool = Field(False, description="fail on any rejected row instead of counting and skipping it")
    replay: float = Field(
        0.25,
        ge=0,
        description="replay rows (the base's own answers, tunemake.steps.replay) per task training row; 0 = off",
    )

    @model_validator(mode="after")
    def _conversations_only(self) -> "PrepareParams":
        unique_labels(self.sources)
        for i, source in enumerate(self.sources):
            if source.format == "preference":
                raise ValueError(
                    f"sources[{i}] ({source.path}) has format preference: list preference sources under pairs.sources"
                )
        return self
