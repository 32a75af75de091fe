"""BFCL as an outside yardstick: its own rows and its own AST checker (bfcl-eval), imported without its API clients."""

from __future__ import annotations

import sys

from tunemake.steps import bfcl


def test_bfcls_checker_scores_a_right_and_a_wrong_answer():
    (triangle, answer), (factorial, factorial_answer) = bfcl.entries("simple_python", None)[:2]
    assert triangle["id"] == "simple_python_0" and answer[0]["calculate_triangle_area"]["base"] == [10]
    right = [{"calculate_triangle_area": {"base": 10, "height": 5}}]
    assert bfcl.judge("simple_python", triangle, right, answer) == {"valid": True}
    wrong = bfcl.judge("simple_python", triangle, [{"calculate_triangle_area": {"base": 10, "height": 6}}], answer)
    assert not wrong["valid"] and wrong["error"]
    assert not bfcl.judge("simple_python", triangle, [], answer)["valid"]  # no call where one was due
    assert not bfcl.judge("simple_python", triangle, None, answer)["valid"]  # arguments that are not JSON
    # "math.factorial" went out as "math_factorial" (OpenAI's name rules), as BFCL sends it, and is read back so
    assert bfcl.judge("simple_python", factorial, [{"math_factorial": {"number": 5}}], factorial_answer)["valid"]
    # the checker came without the model registry that imports every API client BFCL supports
    assert not {"openai.resources.responses", "anthropic", "cohere", "mistralai"} & set(sys.modules)


def test_irrelevance_is_right_only_without_a_call():
    (entry, answer), *_ = bfcl.entries("irrelevance", 3)
    assert answer is None
    assert bfcl.judge("irrelevance", entry, [], None) == {"valid": True}
    assert bfcl.judge("irrelevance", entry, None, None) == {"valid": True}  # undecodable: no call, as BFCL counts it
    assert bfcl.judge("irrelevance", entry, [{"determine_body_mass_index": {"weight": 1}}], None) == {"valid": False}


def test_rows_are_evenly_spaced_and_tools_are_openai_schema():
    every = bfcl.entries("multiple", None)
    picked = bfcl.entries("multiple", 4)
    assert len(every) == 200 and [e["id"] for e, _ in picked] == [every[i][0]["id"] for i in (0, 66, 133, 199)]
    _, tools, _ = bfcl._bfcl()
    (entry, _), *_ = bfcl.entries("simple_python", 1)
    converted = tools(entry["function"])
    assert converted[0]["type"] == "function" and converted[0]["function"]["parameters"]["type"] == "object"
    assert entry["function"][0]["parameters"]["type"] == "dict"  # BFCL's own type, left as it was


def test_the_summary_gives_each_model_its_interval_and_the_paired_change():
    asked = {"irrelevance": [({}, None)] * 10}
    verdicts = {
        "base": {"irrelevance": [{"valid": True}] * 10},
        "tuned": {"irrelevance": [{"valid": i < 2} for i in range(10)]},
        "shipped": {"irrelevance": [{"valid": i < 3} for i in range(10)]},
    }
    scores = bfcl.summary(asked, verdicts)["irrelevance"]
    assert scores["models"]["base"] == {"correct": 10, "total": 10, "accuracy": 100.0, "ci95": [100.0, 100.0]}
    assert scores["models"]["shipped"]["correct"] == 3
    assert scores["minus_base"]["tuned"]["value"] == -80.0 and scores["minus_base"]["tuned"]["ci95"][1] < 0
