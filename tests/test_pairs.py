"""pairs: preference files in TRL's layouts become canonical pairs; every bad pair is a counted reject with file:line
and the fix; a pair whose prompt is a prepared row's prompt lands in that row's split."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import yaml
from pydantic import ValidationError

from conftest import REPO, run, write_jsonl
from tunemake.data.jsonl import read_jsonl
from tunemake.params.schema import Params
from tunemake.steps import pairs, prepare

SYSTEM = "Be brief."


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]

GOOD = [
    {"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Paris."},  # strings
    {  # message lists with tools, as TRL's conversational format
        "prompt": user("Weather in Oslo?"),
        "chosen": [{"role": "assistant", "content": "", "tool_calls": [CALL]}],
        "rejected": answer("I cannot check the weather."),
        "tools": json.dumps(TOOLS),
    },
    {  # implicit prompt: whole conversations sharing their first turns (Anthropic HH style)
        "chosen": user("2 + 2?") + answer("4."),
        "rejected": user("2 + 2?") + answer("5."),
    },
]
BAD = [
    ({"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."}, "identical_answers"),
    ({"prompt": "Empty?", "chosen": "  ", "rejected": "No."}, "empty_answer"),
    ({"chosen": user("A?") + answer("a"), "rejected": user("B?") + answer("b")}, "no_shared_prompt"),
    ({"prompt": "Missing?", "chosen": "Yes."}, "missing_field"),
    ({"prompt": user("Q?") + answer("A."), "chosen": "x", "rejected": "y"}, "bad_turn_order"),
    ({"prompt": "Who?", "chosen": user("me"), "rejected": "you"}, "bad_turn_order"),
    ({"prompt": 3, "chosen": "x", "rejected": "y"}, "wrong_type"),
    ({"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Paris."}, "duplicate"),
]


def params(tmp_path, *sources) -> Params:
    rows = [{"messages": user(f"question {i}") + answer(f"answer {i}"), "group": f"g{i}"} for i in range(40)]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    return Params.model_validate(
        {
            "prepare": {
                "sources": [{"path": str(tmp_path / "rows.jsonl"), "format": "messages", "system": SYSTEM}],
                "replay": 0,
                "group_by": "group",
            },
            "pairs": {"sources": [{"path": str(s), "format": "preference", "system": SYSTEM} for s in sources]},
        }
    )


def test_each_layout_becomes_a_pair_and_each_bad_pair_a_counted_reject(tmp_path):
    source = tmp_path / "prefs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in GOOD + [row for row, _ in BAD]) + "{not json\n")
    config = params(tmp_path, source)
    prepare.run(config.prepare, tmp_path / "data")
    stats = pairs.run(config, tmp_path / "data", tmp_path / "pairs")

    kept = [p for name in ("train", "val", "test") for p in read_jsonl(tmp_path / "pairs" / f"{name}.jsonl")]
    assert sorted(p["meta"]["line"] for p in kept) == [1, 2, 3]
    by_line = {p["meta"]["line"]: p for p in kept}
    assert by_line[1]["prompt"] == [{"role": "system", "content": SYSTEM}, *user("Capital of Peru?")]
    assert by_line[1]["chosen"] == answer("Lima.") and by_line[1]["rejected"] == answer("Paris.")
    assert by_line[2]["tools"] == TOOLS and by_line[2]["chosen"][0]["tool_calls"] == [CALL]
    assert by_line[3]["prompt"][1:] == user("2 + 2?") and by_line[3]["rejected"] == answer("5.")

    rejects = read_jsonl(tmp_path / "pairs" / "rejects.jsonl")
    expected = [(4 + i, reason) for i, (_, reason) in enumerate(BAD)] + [(4 + len(BAD), "invalid_json")]
    assert [(r["line"], r["reason"]) for r in rejects] == expected
    assert all(r["file"] == str(source) and r["fix"] and r["raw"] for r in rejects)
    assert stats["pairs"] == {"kept": 3, "rejected": len(BAD) + 1}


def test_a_pair_with_a_rows_prompt_goes_to_that_rows_split(tmp_path):
    """So DPO never trains on a prompt held out from SFT: the row's group decides, not the pair's own split."""
    source = write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": "no idea", "group": "one"}
            for i in range(40)
        ],
    )
    config = params(tmp_path, source)
    prepare.run(config.prepare, tmp_path / "data")
    stats = pairs.run(config, tmp_path / "data", tmp_path / "pairs")
    assert stats["following_a_row"] == 40
    for name in ("train", "val", "test"):
        rows = {r["messages"][1]["content"] for r in read_jsonl(tmp_path / "data" / f"{name}.jsonl")}
        pair_prompts = {p["prompt"][1]["content"] for p in read_jsonl(tmp_path / "pairs" / f"{name}.jsonl")}
        assert pair_prompts == rows  # all 40 share group "one", yet they follow their rows into every split


def test_default_preference_file_follows_the_default_splits(tmp_path):
    """The bundled pairs (one near miss per sample row) pair with their rows, so the test split's pairs are the
    held-out prompts; the underspecified requests (no SFT row) are split by their phrasing group."""
    shutil.copytree(REPO / "data", tmp_path / "data")
    config = yaml.safe_load((REPO / "params.yaml").read_text())
    config["prepare"]["replay"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config))
    run(["tunemake", "prepare", "--out", "results/data"], tmp_path)
    run(["tunemake", "pairs", "--data", "results/data", "--out", "results/pairs"], tmp_path)
    stats = json.loads((tmp_path / "results" / "pairs" / "stats.json").read_text())
    assert stats["pairs"] == {"kept": 654, "rejected": 0} and stats["following_a_row"] == 558
    test_pairs = read_jsonl(tmp_path / "results" / "pairs" / "test.jsonl")

    def kind(pair: dict) -> str:
        if not pair.get("tools"):
            return "qa"
        if not pair["chosen"][0].get("tool_calls"):
            return "ask"
        return "tool" if pair["rejected"][0].get("tool_calls") else "call, not words"

    kinds = Counter(kind(p) for p in test_pairs)
    # ask: 10 underspecified requests and 15 where no tool fits; the 7 held-out single-tool groups' mirror pairs
    assert kinds == {"tool": 28, "qa": 3, "ask": 25, "call, not words": 7}
    groups = {
        split: {
            p["meta"]["group"]
            for p in read_jsonl(tmp_path / "results" / "pairs" / f"{split}.jsonl")
            if "underspecified" in str(p["meta"].get("group"))
        }
        for split in ("train", "test")
    }
    assert groups["test"] and not groups["test"] & groups["train"]  # a held-out phrasing is never trained on


def test_preference_files_belong_under_pairs_not_prepare(tmp_path):
    with pytest.raises(ValidationError, match="list preference sources under pairs.sources"):
        Params.model_validate({"prepare": {"sources": [{"path": "p.jsonl", "format": "preference"}]}})
    with pytest.raises(ValidationError, match="pairs.sources take format: preference"):
        Params.model_validate(
            {
                "prepare": {"sources": [{"path": "r.jsonl", "format": "messages"}]},
                "pairs": {"sources": [{"path": "r.jsonl", "format": "messages"}]},
            }
        )
