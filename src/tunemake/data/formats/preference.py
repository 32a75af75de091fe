"""Preference pairs, in TRL's two preference layouts (either may carry `tools`, a list or a JSON string):

- explicit prompt: {"prompt", "chosen", "rejected"}; the prompt a string (one user turn) or a message list, each
  answer a string (one assistant turn) or a message list;
- implicit prompt: {"chosen", "rejected"} as whole conversations sharing their first turns (Anthropic HH,
  UltraFeedback-binarized): the prompt is the shared prefix, each answer what follows it.

Each becomes a Pair; prepare checks what every pair must satisfy (distinct, non-empty answers after a user turn).
"""

from __future__ import annotations

from tunemake.data.formats import messages
from tunemake.data.formats.common import Pair, RowError, json_field


def convert(row: dict, source) -> Pair:
    tools = json_field(row, "tools") if "tools" in row else []
    if not isinstance(tools, list):
        raise RowError("wrong_type", "field 'tools' is not a list", "make 'tools' a list of function specs")
    for side in ("chosen", "rejected"):
        if side not in row:
            raise RowError("missing_field", f"field {side!r} is missing", f"add the {side} answer to the row")
    if "prompt" in row:
        prompt = _turns(row, "prompt", "user")
        chosen, rejected = _turns(row, "chosen", "assistant"), _turns(row, "rejected", "assistant")
    else:
        whole_chosen, whole_rejected = _turns(row, "chosen", "assistant"), _turns(row, "rejected", "assistant")
        shared = 0
        while shared < min(len(whole_chosen), len(whole_rejected)) and whole_chosen[shared] == whole_rejected[shared]:
            shared += 1
        if shared == 0:
            raise RowError(
                "no_shared_prompt",
                "chosen and rejected share no first turn, so the prompt is unknown",
                "give both conversations the same opening turns, or add an explicit 'prompt'",
            )
        prompt, chosen, rejected = whole_chosen[:shared], whole_chosen[shared:], whole_rejected[shared:]
    return Pair(prompt, chosen, rejected, tools, consumed=("prompt", "chosen", "rejected", "tools"))


def _turns(row: dict, key: str, role: str) -> list[dict]:
    """A string as one turn of `role`, or a message list checked as the messages format checks it."""
    value = row[key]
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise RowError(
            "wrong_type", f"field {key!r} is {type(value).__name__}", f"make {key!r} a string or a list of messages"
        )
    try:
        return messages.convert({"messages": value}, None).messages
    except RowError as err:
        raise RowError(err.reason, f"{key}: {err.detail}", err.fix) from None
