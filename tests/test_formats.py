"""Each input format becomes the canonical record; each format's own defects are named."""

from __future__ import annotations

import json

import pytest

from tunemake.data.formats import FORMATS, RowError
from tunemake.params.sources import SourceParams

QA = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]

CASES = {
    "messages": ({"messages": QA}, QA),
    "sharegpt": ({"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]}, QA),
    "alpaca": ({"instruction": "What is 2+2?", "input": "", "output": "4"}, QA),
    "qa": ({"question": "What is 2+2?", "answer": "4"}, QA),
    "fields": ({"req": {"text": "What is 2+2?"}, "resp": "4"}, QA),
}


def source(fmt: str, **kw) -> SourceParams:
    if fmt == "fields":
        kw.setdefault("fields", {"prompt": "req.text", "response": "resp"})
    return SourceParams(path="x.jsonl", format=fmt, **kw)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_format_converts_to_canonical_messages(fmt):
    row, expected = CASES[fmt]
    assert FORMATS[fmt](row, source(fmt)).messages == expected


def test_alpaca_input_is_appended_and_qa_topic_is_folded_in():
    alpaca = FORMATS["alpaca"]({"instruction": "Summarise", "input": "Long text", "output": "Short"}, source("alpaca"))
    assert alpaca.messages[0]["content"] == "Summarise\n\nLong text"
    qa = FORMATS["qa"](
        {"topic": "Basic First Aid", "question": "How do I treat a burn?", "answer": "Cool it."}, source("qa")
    )
    assert qa.messages[0]["content"] == "For Basic First Aid, how do I treat a burn?"
    assert "topic" not in qa.consumed  # so it stays in meta for stratifying


def test_xlam_row_becomes_openai_tool_calls_with_json_schema():
    row = {
        "query": "Weather in Oslo in fahrenheit, and 20 USD in EUR?",
        "tools": json.dumps(
            [
                {
                    "name": "get_weather",
                    "description": "w",
                    "parameters": {
                        "city": {"type": "str", "description": "c"},
                        "unit": {"type": "str, optional", "description": "u", "default": "celsius"},
                    },
                },
                {
                    "name": "convert",
                    "description": "c",
                    "parameters": {
                        "amount": {"type": "float", "description": "a"},
                        "codes": {"type": "List[str]", "description": "x"},
                    },
                },
            ]
        ),
        "answers": json.dumps(
            [
                {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "fahrenheit"}},
                {"name": "convert", "arguments": {"amount": 20.0, "codes": ["USD", "EUR"]}},
            ]
        ),
    }
    result = FORMATS["xlam"](row, source("xlam"))
    assert result.messages[1]["tool_calls"][1] == {
        "type": "function",
        "function": {"name": "convert", "arguments": {"amount": 20.0, "codes": ["USD", "EUR"]}},
    }
    weather = result.tools[0]["function"]["parameters"]
    assert weather["required"] == ["city"] and weather["properties"]["unit"]["default"] == "celsius"
    assert result.tools[1]["function"]["parameters"]["properties"]["codes"]["type"] == "array"


def test_an_xlam_row_with_no_fitting_function_becomes_a_text_answer_with_the_sources_reply():
    """xlam's `answers: []` (no offered function fits) is a row that teaches restraint: the tools are offered and
    the answer is the source's reply in words, not a call; not a list at all is still a defect."""
    tools = json.dumps([{"name": "delete_file", "description": "d", "parameters": {"path": {"type": "str"}}}])
    row = {"query": "What is the capital of Peru?", "tools": tools, "answers": "[]"}
    default = FORMATS["xlam"](row, source("xlam"))
    assert default.messages == [
        {"role": "user", "content": "What is the capital of Peru?"},
        {"role": "assistant", "content": "None of the functions I can call does that."},
    ]
    assert [t["function"]["name"] for t in default.tools] == ["delete_file"]
    reply = FORMATS["xlam"](row, source("xlam", no_call_reply="I can only manage files."))
    assert reply.messages[1] == {"role": "assistant", "content": "I can only manage files."}
    with pytest.raises(RowError) as err:
        FORMATS["xlam"]({**row, "answers": '{"name": "delete_file"}'}, source("xlam"))
    assert err.value.reason == "bad_tool_json" and "[] where no offered function fits" in err.value.fix


def test_openai_tool_calls_with_string_arguments_are_parsed():
    row = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
            },
            {"role": "tool", "content": "ok"},
            {"role": "assistant", "content": "done"},
        ]
    }
    result = FORMATS["messages"](row, source("messages"))
    assert result.messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
    }


@pytest.mark.parametrize(
    "fmt,row,reason",
    [
        ("sharegpt", {"conversations": [{"from": "robot", "value": "x"}]}, "bad_role"),
        ("alpaca", {"instruction": "x"}, "missing_field"),
        ("qa", {"question": ["x"], "answer": "y"}, "wrong_type"),
        ("fields", {"req": {"text": "q"}}, "missing_field"),
        (
            "messages",
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}],
                    }
                ]
            },
            "bad_json_field",
        ),
    ],
)
def test_format_defects_have_a_reason_and_a_fix(fmt, row, reason):
    with pytest.raises(RowError) as err:
        FORMATS[fmt](row, source(fmt))
    assert err.value.reason == reason and err.value.fix
