"""evaluate's engine check: the base and tuned models' scores come from their 16-bit GGUFs, so a difference from transformers on
the rows it timed must be recorded and shown, never pass silently (the pipeline run is in tests/test_frontdoors.py)."""

from __future__ import annotations

import logging

from tunemake.evaluate import engine_check


def test_a_row_where_the_engines_differ_is_recorded_and_logged(caplog):
    rows = [{"id": f"r{i}"} for i in range(4)]
    tuned = {"timed_rows": [0, 3], "timed_answers": ["same", "transformers says"], "answers": ["same", "", "", "gguf"]}
    with caplog.at_level(logging.WARNING, logger="tunemake"):
        check = engine_check(rows, tuned, "tuned", "gguf-F16")
    assert check == {
        "answers_from": "gguf-F16",
        "rows": 2,
        "equal": 1,
        "differing": [{"id": "r3", "transformers": "transformers says", "gguf": "gguf"}],
    }
    assert "test row r3 the tuned model" in caplog.text and "'transformers says'" in caplog.text


def test_engines_that_agree_give_a_clean_check():
    tuned = {"timed_rows": [1], "timed_answers": ["ok"], "answers": ["a", "ok"]}
    check = engine_check([{"id": "a"}, {"id": "b"}], tuned, "base", "gguf-base")
    assert check == {"answers_from": "gguf-base", "rows": 1, "equal": 1, "differing": []}
