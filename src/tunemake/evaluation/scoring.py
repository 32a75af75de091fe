"""Scores for one generated answer against its reference: text overlap and, for tool calls, a schema-aware check.

The tool-call check follows the Berkeley Function Calling Leaderboard's AST checker: the function name must be
exact; every required argument present; no argument the function does not declare; each value of its declared
JSON type; and values equal after normalisation (strings compared case-insensitively without surrounding
whitespace or punctuation, integers accepted where a number is declared, lists element-wise, objects key-wise).
A row's calls match the reference's as a multiset, so their order does not matter.
"""

from __future__ import annotations

import json
import re
import string

from rouge_score import rouge_scorer

CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}
_rouge = rouge_scorer.RougeScorer(["rougeL"])


def text_scores(answer: str, reference: str) -> dict:
    return {
        "exact_match": float(" ".join(answer.split()) == " ".join(reference.split())),
        "rouge_l": _rouge.score(reference, answer)["rougeL"].fmeasure,
    }


def parse_calls(answer: str) -> list[dict] | None:
    """The calls in an answer's <tool_call> blocks; None when there is none or one is not a JSON call object."""
    blocks = CALL.findall(answer)
    calls = []
    for block in blocks:
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            return None
        if not (
            isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments", {}), dict)
        ):
            return None
        calls.append({"name": call["name"], "arguments": call.get("arguments", {})})
    return calls or None


def normalise(value):
    if isinstance(value, str):
        return value.strip().strip(string.punctuation + " ").lower()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def type_ok(value, spec: dict) -> bool:
    expected = TYPES.get(spec.get("type"))
    if expected is None:
        return True
    if isinstance(value, bool) and spec.get("type") != "boolean":
        return False  # JSON true is not a number
    return isinstance(value, expected)


def arguments_ok(predicted: dict, reference: dict, schema: dict | None) -> bool:
    properties = (schema or {}).get("properties")
    if properties is not None:
        if any(name not in properties for name in predicted):
            return False  # an argument the function does not declare
        if any(name not in predicted for name in (schema or {}).get("required", [])):
            return False
        if any(not type_ok(value, properties[name]) for name, value in predicted.items()):
            return False
    if set(predicted) != set(reference):
        return False
    return all(normalise(predicted[k]) == normalise(reference[k]) for k in reference)


def tool_scores(answer: str, reference_calls: list[dict], tools: list[dict] | None) -> dict:
    """json_valid, function_name and exact_match (0 or 1) and arguments (the share of calls right) for one row."""
    schemas = {t.get("function", t)["name"]: t.get("function", t).get("parameters") for t in tools or []}
    reference = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in reference_calls]
    predicted = parse_calls(answer)
    if predicted is None:
        return {"json_valid": 0.0, "function_name": 0.0, "arguments": 0.0, "exact_match": 0.0}
    names_ok = sorted(c["name"] for c in predicted) == sorted(c["name"] for c in reference)
    # Each reference call takes a distinct predicted call of the same name whose arguments check out.
    unmatched, correct = list(predicted), 0
    for call in reference:
        match = next(
            (
                p
                for p in unmatched
                if p["name"] == call["name"]
                and arguments_ok(p["arguments"], call["arguments"], schemas.get(call["name"]))
            ),
            None,
        )
        if match is not None:
            unmatched.remove(match)
            correct += 1
    return {
        "json_valid": 1.0,
        "function_name": float(names_ok),
        "arguments": correct / len(reference),
        "exact_match": float(correct == len(reference) and not unmatched),
    }
