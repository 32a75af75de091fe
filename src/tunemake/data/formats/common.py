"""What every format converter shares: the result type, the error type and small field readers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class RowError(Exception):
    """A row that cannot be used. `reason` is a short stable key counted in stats.json; `fix` tells the user what to do."""

    def __init__(self, reason: str, detail: str, fix: str):
        super().__init__(detail)
        self.reason, self.detail, self.fix = reason, detail, fix


@dataclass
class Chat:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    # Raw fields the converter turned into messages; every other scalar field is kept in meta.
    consumed: tuple[str, ...] = ()


@dataclass
class Pair:
    """A preference pair: the conversation so far, then the answer to prefer and the answer to avoid (each a list
    of messages starting with the assistant's turn)."""

    prompt: list[dict[str, Any]]
    chosen: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    consumed: tuple[str, ...] = ()


def text_field(row: dict, key: str, *, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise RowError("missing_field", f"field {key!r} is missing", f"add a {key!r} string to the row")
        return ""
    if not isinstance(value, str):
        raise RowError(
            "wrong_type", f"field {key!r} is {type(value).__name__}, not a string", f"make {key!r} a JSON string"
        )
    return value


def json_field(row: dict, key: str) -> Any:
    """A field that holds JSON, either already parsed or as a JSON string (as xlam-60k stores it)."""
    if key not in row:
        raise RowError("missing_field", f"field {key!r} is missing", f"add {key!r} to the row")
    value = row[key]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise RowError(
                "bad_json_field",
                f"field {key!r} is not valid JSON: {err.msg} at char {err.pos}",
                f"repair the JSON in {key!r}",
            ) from None
    return value
