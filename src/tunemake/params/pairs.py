"""The `pairs` section: preference sources for align (tunemake.steps.pairs)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tunemake.params import Strict
from tunemake.params.sources import SourceParams, unique_labels


class PairsParams(Strict):
    """Preference pairs for the align step, read, deduplicated and split with prepare's settings (tunemake.steps.pairs)."""

    sources: list[SourceParams] = Field(default_factory=list, description="files in the preference format")

    @model_validator(mode="after")
    def _preference_only(self) -> "PairsParams":
        unique_labels(self.sources)
        for i, source in enumerate(self.sources):
            if source.format != "preference":
                raise ValueError(
                    f"sources[{i}] ({source.path}) has format {source.format}: pairs.sources take format: preference "
                    "(conversations go under prepare.sources)"
                )
        return self
