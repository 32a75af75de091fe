"""Field-mapped logs (for example agent interaction logs): params map prompt/response/system to row fields.

format: fields
fields: {prompt: task.description, response: output, system: agent_prompt}
where: {success: true}
"""

from __future__ import annotations

from tunemake.data.formats.common import Chat, RowError
from tunemake.data.jsonl import dotted


def convert(row: dict, source) -> Chat:
    mapping = source.fields
    for role in ("prompt", "response"):
        if role not in mapping:
            raise RowError(
                "bad_config", f"source has no fields.{role}", f"set fields.{role} to the row field holding the {role}"
            )
    messages = []
    if "system" in mapping:
        system = dotted(row, mapping["system"])
        if isinstance(system, str) and system.strip():
            messages.append({"role": "system", "content": system})
    for role, key in (("user", mapping["prompt"]), ("assistant", mapping["response"])):
        value = dotted(row, key)
        if value is None:
            raise RowError(
                "missing_field", f"field {key!r} is missing", f"add {key!r} to the row or fix fields in params.yaml"
            )
        if not isinstance(value, str):
            raise RowError(
                "wrong_type", f"field {key!r} is {type(value).__name__}, not a string", f"make {key!r} a string"
            )
        messages.append({"role": role, "content": value})
    return Chat(messages, consumed=tuple(key.split(".")[0] for key in mapping.values()))
