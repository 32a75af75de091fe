"""xlam-style tool calling, as in Salesforce/xlam-function-calling-60k:

    {"query": str, "tools": "<JSON list>", "answers": "<JSON list of {name, arguments}>"}

`answers: []` is xlam's "no offered function fits": the row's answer is then text, the source's `no_call_reply`,
so restraint is trained too.

xlam writes each tool's parameters as {arg: {"type": "str, optional", "description", "default"}}; they become the
JSON Schema that chat templates and the evaluator expect. Tools already in JSON Schema form pass through.
"""

from __future__ import annotations

import re

from tunemake.data.formats.common import Chat, RowError, json_field, text_field

JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


def convert(row: dict, source) -> Chat:
    query = text_field(row, "query")
    tools = json_field(row, "tools")
    answers = json_field(row, "answers")
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise RowError(
            "bad_tool_json", "'tools' is not a list of {name, description, parameters}", "fix the 'tools' JSON"
        )
    if not isinstance(answers, list):
        raise RowError(
            "bad_tool_json",
            "'answers' is not a list of calls",
            "give 'answers' a list of {name, arguments}, or [] where no offered function fits",
        )
    if not answers:
        messages = [{"role": "user", "content": query}, {"role": "assistant", "content": source.no_call_reply}]
        return Chat(messages, [_tool_spec(t) for t in tools], consumed=("query", "tools", "answers"))
    names = {t["name"] for t in tools}
    calls = []
    for i, answer in enumerate(answers):
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise RowError("bad_tool_call", f"answers[{i}] has no function name", "give each answer a 'name'")
        if answer["name"] not in names:
            raise RowError(
                "bad_tool_call",
                f"answers[{i}] calls {answer['name']!r}, which is not in 'tools'",
                "add the tool or fix the name",
            )
        arguments = answer.get("arguments", {})
        if not isinstance(arguments, dict):
            raise RowError("bad_tool_call", f"answers[{i}].arguments is not an object", "make arguments a JSON object")
        calls.append({"type": "function", "function": {"name": answer["name"], "arguments": arguments}})
    messages = [{"role": "user", "content": query}, {"role": "assistant", "content": "", "tool_calls": calls}]
    return Chat(messages, [_tool_spec(t) for t in tools], consumed=("query", "tools", "answers"))


def _tool_spec(tool: dict) -> dict:
    params = tool.get("parameters") or {}
    if params.get("type") == "object":
        schema = params
    else:
        properties, required = {}, []
        for arg, spec in params.items():
            spec = spec if isinstance(spec, dict) else {}
            type_text = str(spec.get("type", ""))
            prop = {"description": spec.get("description", "")}
            json_type = _json_type(type_text)
            if json_type:
                prop["type"] = json_type
            if "default" in spec:
                prop["default"] = spec["default"]
            properties[arg] = prop
            if "optional" not in type_text and "default" not in spec:
                required.append(arg)
        schema = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": tool["name"], "description": tool.get("description", ""), "parameters": schema},
    }


def _json_type(type_text: str) -> str | None:
    head = re.split(r"[\[,\s]", type_text.strip(), maxsplit=1)[0].lower()
    return JSON_TYPES.get(head)
