"""The schema-aware tool-call checker (BFCL-style) and the text scores."""

from __future__ import annotations

import json

import pytest

from tunemake.evaluation.scoring import parse_calls, text_scores, tool_scores

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "parameters": {
                "type": "object",
                "required": ["amount", "from_currency", "to_currency"],
                "properties": {
                    "amount": {"type": "number"},
                    "from_currency": {"type": "string"},
                    "to_currency": {"type": "string"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "find_recipes",
            "parameters": {
                "type": "object",
                "required": ["ingredient"],
                "properties": {"ingredient": {"type": "string"}, "max_minutes": {"type": "integer"}},
            },
        },
    },
]
REFERENCE = [
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "arguments": {"amount": 161.0, "from_currency": "AUD", "to_currency": "GBP"},
        },
    },
    {"type": "function", "function": {"name": "find_recipes", "arguments": {"ingredient": "rice"}}},
]


def answer(*calls) -> str:
    return "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls)


RIGHT = [
    ("convert_currency", {"amount": 161, "from_currency": "aud", "to_currency": "GBP "}),
    ("find_recipes", {"ingredient": "Rice."}),
]


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        # Both calls, in the other order, with an int for a number and case/punctuation/space differences: all right.
        (RIGHT[::-1], {"json_valid": 1, "function_name": 1, "arguments": 1, "exact_match": 1}),
        # A wrong value in one call: names right, half the arguments right, no exact match.
        (
            [RIGHT[0], ("find_recipes", {"ingredient": "beans"})],
            {"json_valid": 1, "function_name": 1, "arguments": 0.5, "exact_match": 0},
        ),
        # An argument the function does not declare.
        (
            [RIGHT[0], ("find_recipes", {"ingredient": "rice", "spicy": True})],
            {"json_valid": 1, "function_name": 1, "arguments": 0.5, "exact_match": 0},
        ),
        # A string where the schema says number.
        (
            [("convert_currency", {"amount": "161", "from_currency": "AUD", "to_currency": "GBP"}), RIGHT[1]],
            {"json_valid": 1, "function_name": 1, "arguments": 0.5, "exact_match": 0},
        ),
        # A required argument missing.
        (
            [("convert_currency", {"amount": 161, "from_currency": "AUD"}), RIGHT[1]],
            {"json_valid": 1, "function_name": 1, "arguments": 0.5, "exact_match": 0},
        ),
        # One call missing, or one extra: names wrong.
        ([RIGHT[0]], {"json_valid": 1, "function_name": 0, "arguments": 0.5, "exact_match": 0}),
        ([*RIGHT, RIGHT[1]], {"json_valid": 1, "function_name": 0, "arguments": 1, "exact_match": 0}),
    ],
)
def test_tool_scores_follow_the_bfcl_checker(calls, expected):
    assert tool_scores(answer(*calls), REFERENCE, TOOLS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Sure! I will convert it.",
        '<tool_call>\n{"name": "convert_currency", "arguments": {"amount": 1}\n</tool_call>',
        '<tool_call>["convert_currency"]</tool_call>',
    ],
)
def test_no_call_or_broken_json_scores_zero(text):
    assert parse_calls(text) is None
    assert tool_scores(text, REFERENCE, TOOLS) == {
        "json_valid": 0,
        "function_name": 0,
        "arguments": 0,
        "exact_match": 0,
    }


def test_text_scores():
    assert text_scores("Check  the flapper.\n", "Check the flapper.") == {"exact_match": 1.0, "rouge_l": 1.0}
    partial = text_scores("check the tank flapper", "Check the flapper and the chain")
    assert partial["exact_match"] == 0 and 0.4 < partial["rouge_l"] < 0.8
