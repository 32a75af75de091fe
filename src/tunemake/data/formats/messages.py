"""OpenAI chat format: {"messages": [{"role", "content", "tool_calls"?}], "tools"?: [...]}."""

from __future__ import annotations

from tunemake.data.formats.common import Chat, RowError, json_field

ROLES = {"system", "user", "assistant", "tool"}


def convert(row: dict, source) -> Chat:
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise RowError("missing_field", "field 'messages' is missing or not a list", "give the row a 'messages' list")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RowError(
                "wrong_type", f"messages[{i}] is not an object", "make each message a {role, content} object"
            )
        role = message.get("role")
        if role not in ROLES:
            raise RowError("bad_role", f"messages[{i}].role is {role!r}", f"use one of {sorted(ROLES)} as the role")
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RowError(
                "wrong_type",
                f"messages[{i}].content is {type(content).__name__}, not a string",
                "make content a string",
            )
        item = {"role": role, "content": content}
        if message.get("tool_calls"):
            item["tool_calls"] = [_tool_call(call, i) for call in message["tool_calls"]]
        out.append(item)
    tools = json_field(row, "tools") if "tools" in row else []
    if not isinstance(tools, list):
        raise RowError("wrong_type", "field 'tools' is not a list", "make 'tools' a list of function specs")
    return Chat(out, tools, consumed=("messages", "tools"))


def _tool_call(call, i: int) -> dict:
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise RowError(
            "bad_tool_call", f"messages[{i}].tool_calls has a call without a name", "give each call a function name"
        )
    arguments = json_field(function, "arguments") if "arguments" in function else {}
    if not isinstance(arguments, dict):
        raise RowError(
            "bad_tool_call",
            f"messages[{i}] call {function['name']!r}: arguments are not an object",
            "make arguments a JSON object",
        )
    return {"type": "function", "function": {"name": function["name"], "arguments": arguments}}
