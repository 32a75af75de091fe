"""ShareGPT: {"conversations": [{"from": "human|gpt|system|tool", "value": str}]}."""

from __future__ import annotations

from tunemake.data.formats.common import Chat, RowError

ROLE_OF = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function_response": "tool",
}


def convert(row: dict, source) -> Chat:
    turns = row.get("conversations")
    if not isinstance(turns, list):
        raise RowError(
            "missing_field", "field 'conversations' is missing or not a list", "give the row a 'conversations' list"
        )
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RowError(
                "wrong_type", f"conversations[{i}] is not an object", "make each turn a {from, value} object"
            )
        speaker = turn.get("from")
        if speaker not in ROLE_OF:
            raise RowError("bad_role", f"conversations[{i}].from is {speaker!r}", f"use one of {sorted(ROLE_OF)}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise RowError("wrong_type", f"conversations[{i}].value is not a string", "make value a string")
        messages.append({"role": ROLE_OF[speaker], "content": value})
    return Chat(messages, consumed=("conversations",))
