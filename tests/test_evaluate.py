"""evaluate's engine check: the base and tuned models' scores come from their 16-bit GGUFs, so a difference from transformers on
the rows it timed must be recorded and shown, never pass silently (the pipeline run is in tests/test_frontdoors.py);
and the base's row, read from the baseline step, must have been scored with this run's settings."""

from __future__ import annotations

import json
import logging

import pytest

from tunemake.errors import StepError
from tunemake.evaluate import engine_check, read_baseline
from tunemake.params import EvalParams


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


def test_a_baseline_scored_with_other_eval_settings_is_refused(tmp_path):
    """evaluate reads the base's row from the baseline step; one scored with other settings would compare unlike
    with unlike, so it must be refused with the file and the fix named."""
    settings = EvalParams().model_dump(include={"max_new_tokens", "speed_rows", "limit"})
    (tmp_path / "base.json").write_text(json.dumps({"settings": settings, "answers": ["a"]}))
    assert read_baseline(tmp_path, EvalParams())["answers"] == ["a"]
    with pytest.raises(StepError, match=r"base.json scored the base with eval settings .*run the baseline step again"):
        read_baseline(tmp_path, EvalParams(max_new_tokens=4))
