"""The Markdown report on its own (the pipeline tests render it end to end)."""

from __future__ import annotations

import pytest

from tunemake import report

TABLES = ("gate", "headline", "general", "quality", "bfcl", "speed", "training", "alignment", "reinforcement", "data")


@pytest.mark.parametrize("mostly_broken", [False, True])
def test_the_markdown_report_keeps_the_engine_note_whether_or_not_the_base_was_broken(mostly_broken):
    result = {
        "verdict": "iterate",
        "shipped": "Q5_0",
        "metric": "tool_calls.exact_match",
        "reasons": ["no call where none fits: FAILED"],
        "base_answers": {
            "mostly_broken": mostly_broken,
            "sound": 3,
            "conversations": 66,
            "degenerate_rate": 90.0,
            "unfinished_rate": 5.0,
        },
    }
    tabs = {name: (["model", "score"], [["base", 1.0]]) for name in TABLES}
    text = report.markdown(
        result, tabs, [], [], "train: {}", {"git_commit": "abc", "packages": {}}, "Every GGUF answered served."
    )
    assert "**Verdict: ITERATE**" in text and "- no call where none fits: FAILED" in text
    assert "Every GGUF answered served." in text
    assert ("it is a pretrained model, or a poorly chosen one" in text) == mostly_broken
