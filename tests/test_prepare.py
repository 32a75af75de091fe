"""prepare on good and bad input: every defect is counted with file:line and a fix; nothing is silently lost."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run, write_jsonl
from tunemake.data.chat import answer_kind
from tunemake.data.jsonl import read_jsonl
from tunemake.errors import StepError
from tunemake.params.prepare import PrepareParams
from tunemake.steps import prepare
from tunemake.steps.replay import off as replay_off


def chat(user: str, answer: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}


def line(row) -> bytes:
    return (json.dumps(row) + "\n").encode()


# One line per case of bad input, with what prepare must make of it.
BAD_LINES = [
    (b"\xef\xbb\xbf" + line(chat("bom first line", "kept")), "kept"),
    (line(chat("crlf line", "kept"))[:-1] + b"\r\n", "kept"),
    (b"\n", "blank"),
    (b"   \r\n", "blank"),
    (b'{"messages": [{"role": "user", "content": "unterminated"}\n', "invalid_json"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "x"}]}\n', "not_utf8"),
    (b'["a", "list"]\n', "not_an_object"),
    (line({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}), "wrong_type"),
    (line({"messages": "not a list"}), "missing_field"),
    (line({"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]}), "bad_role"),
    (line({"messages": [{"role": "user", "content": "only a question"}]}), "missing_roles"),
    (line({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "   "}]}), "missing_roles"),
    (
        line(
            {
                "messages": [
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "b"},
                ]
            }
        ),
        "bad_turn_order",
    ),
    (line(chat("crlf line", "kept")), "duplicate"),
    (
        line(
            {
                "messages": [
                    {"role": "user", "content": ""},
                    {"role": "user", "content": "real question"},
                    {"role": "assistant", "content": "kept"},
                ]
            }
        ),
        "kept",
    ),
    (
        line(
            {
                **chat("trailing user turn", "kept"),
                "messages": chat("trailing user turn", "kept")["messages"] + [{"role": "user", "content": "thanks"}],
            }
        ),
        "kept",
    ),
]

XLAM_TOOLS = json.dumps(
    [{"name": "get_weather", "description": "weather", "parameters": {"city": {"type": "str", "description": "c"}}}]
)
BAD_XLAM = [
    (
        {
            "query": "weather in Oslo?",
            "tools": XLAM_TOOLS,
            "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
        },
        "kept",
    ),
    (
        {
            "query": "weather in Rome?",
            "tools": XLAM_TOOLS,
            "answers": '[{"name": "get_weather", "arguments": {"city": "Rome"}',
        },
        "bad_json_field",
    ),
    (
        {
            "query": "weather in Bern?",
            "tools": XLAM_TOOLS,
            "answers": json.dumps([{"name": "get_time", "arguments": {}}]),
        },
        "bad_tool_call",
    ),
    ({"query": "weather in Riga?", "tools": "{not json", "answers": "[]"}, "bad_json_field"),
    ({"query": 7, "tools": XLAM_TOOLS, "answers": "[]"}, "wrong_type"),
]


@pytest.fixture
def bad_sources(tmp_path):
    messages = tmp_path / "messy.jsonl"
    messages.write_bytes(b"".join(raw for raw, _ in BAD_LINES))
    xlam = write_jsonl(tmp_path / "tools.jsonl", [row for row, _ in BAD_XLAM])
    return messages, xlam


def params_for(*sources, **overrides) -> PrepareParams:
    return PrepareParams.model_validate({"sources": list(sources), "stratify_by": None, "replay": 0, **overrides})


def test_every_bad_line_is_counted_with_its_file_line_and_fix(tmp_path, bad_sources):
    messages, xlam = bad_sources
    # several copies of the good rows, so every split gets some
    good = write_jsonl(tmp_path / "good.jsonl", [chat(f"question {i}", f"answer {i}") for i in range(30)])
    params = params_for(
        {"path": str(messages), "format": "messages"},
        {"path": str(xlam), "format": "xlam"},
        {"path": str(good), "format": "messages"},
    )
    stats = prepare.run(params, tmp_path / "out")

    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    got = {(r["file"], r["line"]): r["reason"] for r in rejects}
    numbered = [(n, want) for n, (_, want) in enumerate(BAD_LINES, start=1) if want not in ("kept", "blank")]
    expected = {(str(messages), n): want for n, want in numbered}
    expected |= {(str(xlam), n): want for n, (_, want) in enumerate(BAD_XLAM, start=1) if want != "kept"}
    assert got == expected
    for reject in rejects:
        assert reject["fix"] and reject["detail"] and reject["raw"], reject

    source = stats["sources"]["messy"]
    assert source["repaired"] == {
        "bom_stripped": 1,
        "crlf_lines": 2,
        "blank_lines": 2,
        "empty_turns_dropped": 1,
        "trailing_turns_trimmed": 1,
    }
    # nothing lost: every non-blank line is either kept or rejected
    assert source["kept"] + sum(source["rejected"].values()) == source["lines"] == len(BAD_LINES) - 2
    kept_rows = [r for split in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"{split}.jsonl")]
    assert len(kept_rows) == stats["rows"]["kept"] == 4 + 1 + 30
    assert stats["rejects"]["duplicate"] == 1


def test_bom_row_keeps_its_content(tmp_path, bad_sources):
    messages, _ = bad_sources
    good = write_jsonl(tmp_path / "good.jsonl", [chat(f"q{i}", f"a{i}") for i in range(30)])
    prepare.run(
        params_for({"path": str(messages), "format": "messages"}, {"path": str(good), "format": "messages"}),
        tmp_path / "out",
    )
    rows = [r for split in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"{split}.jsonl")]
    by_line = {r["meta"]["line"]: r for r in rows if r["meta"]["source"] == "messy"}
    assert by_line[1]["messages"][0]["content"] == "bom first line"
    assert by_line[1]["id"] == "messy:1"


def test_strict_fails_naming_file_line_and_fix_and_writes_nothing(tmp_path, bad_sources):
    messages, _ = bad_sources
    with pytest.raises(StepError) as err:
        prepare.run(params_for({"path": str(messages), "format": "messages"}, strict=True), tmp_path / "out")
    text = str(err.value)
    assert f"{messages}:5: invalid_json" in text and f"{messages}:6: not_utf8" in text
    assert "prepare.strict: false" in text and "re-encode the file as UTF-8" in text
    assert not (tmp_path / "out").exists()


def test_source_that_yields_no_rows_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n{broken\n")
    good = write_jsonl(tmp_path / "good.jsonl", [chat(f"q{i}", f"a{i}") for i in range(30)])
    with pytest.raises(StepError, match=r"empty.jsonl: yielded no usable rows \(1 invalid_json\)") as err:
        prepare.run(
            params_for({"path": str(good), "format": "messages"}, {"path": str(empty), "format": "messages"}),
            tmp_path / "out",
        )
    assert f"First: {empty}:3: " in str(err.value) and "one complete JSON object" in str(err.value)


def test_wrong_format_for_a_file_is_an_error_not_an_empty_dataset(tmp_path):
    rows = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(10)])
    with pytest.raises(StepError, match="format: messages matches the file"):
        prepare.run(params_for({"path": str(rows), "format": "messages"}), tmp_path / "out")


def test_empty_split_is_an_error(tmp_path):
    rows = write_jsonl(tmp_path / "few.jsonl", [chat(f"q{i}", f"a{i}", group="one") for i in range(20)])
    with pytest.raises(StepError, match="split 'val' is empty"):
        prepare.run(params_for({"path": str(rows), "format": "messages"}, group_by="group"), tmp_path / "out")


def test_missing_source_file_is_named(tmp_path):
    with pytest.raises(StepError, match="nope.jsonl: source file not found"):
        prepare.run(params_for({"path": str(tmp_path / "nope.jsonl"), "format": "messages"}), tmp_path / "out")


def test_where_filter_and_field_mapping_for_logs(tmp_path):
    logs = write_jsonl(
        tmp_path / "interactions.jsonl",
        [
            {
                "task": {"text": f"task {i}"},
                "output": f"done {i}",
                "agent": "coder" if i % 2 else "tester",
                "success": i % 5 != 0,
            }
            for i in range(40)
        ],
    )
    source = {
        "path": str(logs),
        "format": "fields",
        "fields": {"prompt": "task.text", "response": "output"},
        "where": {"success": True},
        "system": "You are a careful engineer.",
    }
    stats = prepare.run(params_for(source, stratify_by="agent"), tmp_path / "out")
    assert stats["rows"]["kept"] == 32 and stats["rejects"] == {"filtered_out": 8}
    rows = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert rows[0]["messages"][0] == {"role": "system", "content": "You are a careful engineer."}
    assert rows[0]["meta"]["agent"] in {"coder", "tester"} and "success" in rows[0]["meta"]
    # the filter is the user's choice, so it never fails a strict run
    prepare.run(params_for(source, strict=True), tmp_path / "strict")


def test_system_prompt_chosen_by_a_field_per_row(tmp_path):
    """Seed 001's per-agent system prompts: the agent field picks the prompt; an agent it does not list is a
    counted reject naming the fix, unless the source has a fallback `system`."""
    agents = ["coder", "tester", "planner", "coder"] * 10
    logs = write_jsonl(
        tmp_path / "agents.jsonl",
        [{"task": f"task {i}", "output": f"done {i}", "agent": agent} for i, agent in enumerate(agents)],
    )
    source = {
        "path": str(logs),
        "format": "fields",
        "fields": {"prompt": "task", "response": "output"},
        "system_by": {"field": "agent", "prompts": {"coder": "You write code.", "tester": "You write tests."}},
    }
    stats = prepare.run(params_for(source), tmp_path / "out")
    assert stats["rows"]["kept"] == 30 and stats["rejects"] == {"no_system_prompt": 10}
    reject = read_jsonl(tmp_path / "out" / "rejects.jsonl")[0]
    assert reject["line"] == 3 and "'planner'" in reject["detail"] and "system_by.prompts" in reject["fix"]
    rows = [r for name in ("train", "val", "test") for r in read_jsonl(tmp_path / "out" / f"{name}.jsonl")]
    assert {(r["meta"]["agent"], r["messages"][0]["content"]) for r in rows} == {
        ("coder", "You write code."),
        ("tester", "You write tests."),
    }
    fallback = prepare.run(params_for({**source, "system": "You plan."}), tmp_path / "fallback")
    assert fallback["rows"]["kept"] == 40


def test_cli_reports_bad_params_and_bad_data_without_traceback(tmp_path, bad_sources):
    messages, _ = bad_sources
    params = tmp_path / "params.yaml"
    params.write_text(f"prepare:\n  sources:\n    - path: {messages}\n      format: jsonl\n")
    result = run(["tunemake", "prepare", "--params", str(params), "--out", str(tmp_path / "out")], REPO, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "prepare.sources.0.format" in result.stderr and "unknown format 'jsonl'" in result.stderr

    params.write_text(f"prepare:\n  strict: true\n  sources:\n    - path: {messages}\n      format: messages\n")
    result = run(["tunemake", "prepare", "--params", str(params), "--out", str(tmp_path / "out")], REPO, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{messages}:7: not_an_object" in result.stderr


def test_default_data_holds_out_whole_phrasing_groups_and_their_values(tmp_path, monkeypatch):
    """The shipped sample measures generalisation: no test phrasing group, and no free-form argument value of a
    test call (cities, names, numbers...), occurs in training. Closed vocabularies (currency codes, units,
    languages, travel modes) are necessarily shared and excluded from the check."""
    import yaml

    from tunemake.params.schema import Params

    monkeypatch.chdir(REPO)
    params = Params.model_validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    prepare.run(params.prepare.model_copy(update={"replay": 0}), tmp_path / "out")  # the task rows only
    rows = {
        s: [r for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl") if r["meta"]["source"] == "tool_calls"]
        for s in ("train", "test")
    }
    closed = {"from_currency", "to_currency", "from_unit", "to_unit", "target_language", "mode"}

    def values(split):
        return {
            (k, json.dumps(v))
            for r in rows[split]
            for m in r["messages"]
            for c in m.get("tool_calls", [])
            for k, v in c["function"]["arguments"].items()
            if k not in closed
        }

    groups = {s: {r["meta"]["group"] for r in rows[s]} for s in rows}
    assert len(rows["test"]) >= 20 and groups["test"] and not groups["test"] & groups["train"]
    assert not values("test") & values("train")
    # The no-call rows (xlam `answers: []`) are split by their request group like the others, and answered in words
    no_call = {s: [r for r in rows[s] if answer_kind(r) == "no_call"] for s in rows}
    assert no_call["test"] and no_call["train"]
    # requests no tool serves (none:*), and call requests asked again without their tool, in their own group
    assert {r["meta"]["group"].split(":")[0] for s in rows for r in no_call[s]} == {"none", "single"}
    assert {r["messages"][-1]["content"] for s in rows for r in no_call[s]} == {params.prepare.sources[0].no_call_reply}
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["splits"]["test"]["by_kind"]["no_call"] == len(no_call["test"])


def test_replay_rows_join_the_training_split_only_in_the_asked_share(tmp_path):
    source = write_jsonl(tmp_path / "task.jsonl", [chat(f"task question {i}", f"answer {i}") for i in range(100)])
    replay = tmp_path / "replay"
    write_jsonl(
        replay / "rows.jsonl",
        [
            {"id": f"replay:{i}", "messages": chat(f"general {i}", "base")["messages"], "meta": {"source": "replay"}}
            for i in range(30)
        ],
    )
    params = dict(sources=[{"path": str(source), "format": "messages"}], stratify_by=None)

    def replayed(ratio: float, given=replay) -> dict[str, int]:
        prepare.run(PrepareParams(**params, replay=ratio), tmp_path / "out", given)
        splits = {s: read_jsonl(tmp_path / "out" / f"{s}.jsonl") for s in ("train", "val", "test")}
        return {s: sum(r["id"].startswith("replay:") for r in rows) for s, rows in splits.items()}

    assert replayed(0.25) == {"train": 20, "val": 0, "test": 0}  # 0.25 x 80 task rows; val and test measure the task
    assert replayed(0) == replayed(0, given=None) == {"train": 0, "val": 0, "test": 0}
    assert replayed(1.0)["train"] == 30  # all there are, with a warning
    with pytest.raises(StepError, match="prepare.replay is 0.25 but no --replay folder"):
        replayed(0.25, given=None)
    replay_off(tmp_path / "off")  # what the replay step makes with prepare.replay: 0
    assert replayed(0, given=tmp_path / "off")["train"] == 0
    with pytest.raises(StepError, match="was made with replay off: run the replay step again"):
        replayed(0.25, given=tmp_path / "off")
