"""A data source, as `prepare.sources` and `pairs.sources` list them (tunemake.data.sources)."""

from __future__ import annotations

from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from tunemake.params import Strict, registered

Format = Annotated[str, registered("data.formats", "format")]


class SystemBy(Strict):
    field: str = Field(description="the row field (dotted paths allowed) whose value picks the system prompt")
    prompts: dict[str, str] = Field(min_length=1, description="field value -> system prompt")


class SourceParams(Strict):
    path: str
    format: Format = Field(
        description="a module in tunemake/data/formats/: messages, sharegpt, alpaca, qa, xlam, fields"
    )
    name: str | None = Field(None, description="label used in stats and ids; defaults to the file's stem")
    system: str | None = Field(None, description="system prompt added to rows that have none")
    system_by: SystemBy | None = Field(
        None,
        description="a system prompt per value of a row field, e.g. {field: agent, prompts: {coder: ..., tester: "
        "...}}, for rows that have none; a value it does not list falls back to `system`, or is a reject",
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="keep only rows whose field equals the value (or is in the list), e.g. {success: true}",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="format 'fields': map prompt/response/system to row fields (dotted paths allowed)",
    )
    no_call_reply: str = Field(
        "None of the functions I can call does that.",
        min_length=1,
        description="format 'xlam': the assistant's answer in words to a row whose `answers` is [] (no offered "
        "function fits), so the model learns when not to call",
    )

    @cached_property  # read for every row
    def label(self) -> str:
        return self.name or Path(self.path).stem


def unique_labels(sources: list[SourceParams]) -> None:
    """A source's label makes its rows' ids (label:line): two sources with one label would mix their rows' ids."""
    labels = Counter(source.label for source in sources)
    for label, count in labels.items():
        if count > 1:
            paths = ", ".join(s.path for s in sources if s.label == label)
            raise ValueError(f"{count} sources are labelled {label!r} ({paths}): give each a different `name`")
