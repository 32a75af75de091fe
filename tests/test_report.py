"""The report's two pages from their templates, on their own (the pipeline tests render them end to end)."""

from __future__ import annotations

import pytest

from tunemake.steps import report

TABLES = ("gate", "headline", "general", "quality", "bfcl", "speed", "training", "alignment", "reinforcement", "data")


@pytest.mark.parametrize("mostly_broken", [False, True])
def test_both_pages_say_the_same_whether_or_not_the_base_was_broken(mostly_broken):
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
    context = dict(
        result=result,
        tables={name: (["model", "score"], [["base", 1.5], ["tuned", None]]) for name in TABLES},
        plots={"scores": "data:", "losses": "data:"},
        samples=[{"id": "tool_calls:7", "prompt": "weather in Paris?", "reference": "get_weather", "answers": {}}],
        general=[],
        general_count=66,
        base_note=report.base_note(result),
        params_text="train: {}\n",
        swept=None,
        summary={"git_commit": "abc", "packages": {"torch": "2.9"}},
        metrics={"test_rows": 46, "tool_call_rows": 28, "no_call_rows": 15},
        engines="Every GGUF answered served.",
        bfcl_note="BFCL rows.",
    )
    pages = report.pages(context)
    html, md = pages["index.html"], pages["report.md"]
    for text in (
        "ITERATE",
        "no call where none fits: FAILED",
        "Every GGUF answered served.",
        "46 rows, 28 with tool calls, 15 where no offered tool fits",
        "BFCL rows.",
        "tool_calls:7",
        "torch 2.9",
    ):
        assert text in html and text in md, text
    assert "| base    |     1.5 |\n| tuned   |     -   |" in md  # a table, a missing value as -
    assert ("it is a pretrained model, or a poorly chosen one" in md) == mostly_broken
    assert ("it is a pretrained model, or a poorly chosen one" in html) == mostly_broken
    assert "## Alignment (DPO)" not in md and "Alignment (DPO)" not in html  # no plot: the step did not run


def test_the_rows_the_last_step_changed_come_first():
    def row(i: int, sft: str, tuned: str) -> dict:
        return {"id": str(i), "answers": {"base": "b", "sft": sft, "tuned": tuned, "gguf-F16": tuned}}

    rows = [row(0, "same", "same"), row(1, "b", "b"), row(2, "sft", "grpo"), row(3, "x", "x"), row(4, "a", "c")]
    assert [r["id"] for r in report.held_out_samples(rows)] == ["2", "4", "0", "3", "1"]
    assert [r["id"] for r in report.held_out_samples([row(i, "s", "t") for i in range(9)])] == list("012345")
