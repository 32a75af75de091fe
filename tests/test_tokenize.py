"""tokenize with SmolLM2's real tokenizer: only assistant tokens are trained, tools survive, policies are counted."""

from __future__ import annotations

import ast
import shutil

import pytest

from tunemake.commands import show_tokens
from tunemake.data import chat, tool_template
from tunemake.data.chat import Renderer, fast_tokenizer
from tunemake.data.jsonl import write_jsonl
from tunemake.errors import StepError
from tunemake.params.tokenize import TokenizeParams
from tunemake.steps import tokenize
from tunemake.training.loss import IGNORE

# A minimal template that renders tools and tool calls natively (as Qwen2.5's or Llama 3.1's do).
NATIVE_TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "w",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOL_RECORD = {
    "id": "t:1",
    "meta": {"file": "t.jsonl", "line": 1},
    "tools": TOOLS,
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
    ],
}
MULTI_TURN = {
    "id": "m:1",
    "meta": {"file": "m.jsonl", "line": 1},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of Norway?"},
        {"role": "assistant", "content": "Oslo."},
        {"role": "user", "content": "And of Peru?"},
        {"role": "assistant", "content": "Lima."},
    ],
}


@pytest.fixture(scope="module")
def renderer(smol_tokenizer_dir):
    return Renderer(fast_tokenizer(smol_tokenizer_dir))


def trained_text(renderer, labels) -> str:
    return renderer.tokenizer.decode([t for t in labels if t != IGNORE])


def test_only_assistant_turns_and_their_end_token_are_labelled(renderer):
    [(ids, labels)] = tokenize.encode(renderer, MULTI_TURN)
    assert len(ids) == len(labels)
    assert trained_text(renderer, labels) == "Oslo.<|im_end|>Lima.<|im_end|>"
    # every label is either masked or equal to its input token (causal shift happens in the model)
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels))


def test_smollm2_template_is_extended_to_render_tools_and_trains_through_it(renderer):
    assert renderer.extended and renderer.support.native  # SmolLM2's own template renders neither tools nor calls
    [(ids, labels)] = tokenize.encode(renderer, TOOL_RECORD)
    text = renderer.tokenizer.decode(ids)
    assert '<tools>\n{"name": "get_weather"' in text and "<|im_start|>user\nWeather in Oslo?" in text
    assert (
        trained_text(renderer, labels)
        == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>'
    )


def test_the_extended_template_renders_tools_calls_and_results_in_the_hermes_convention(renderer):
    """Every part of the convention, as a server renders an OpenAI request (arguments as a JSON string) and as
    training rows hold it (arguments as an object): the same text."""
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    as_sent = {**call, "function": {**call["function"], "arguments": '{"city": "Oslo"}'}}
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call, call]},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees."},
    ]
    block = (
        tool_template.TOOL_INSTRUCTIONS
        + '\n<tools>\n{"name": "get_weather", "description": "w", "parameters": '
        + ('{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}\n</tools>')
    )
    tool_call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    expected = (
        f"<|im_start|>system\nBe brief.\n\n{block}<|im_end|>\n<|im_start|>user\nWeather in Oslo and Bergen?<|im_end|>\n"
        f"<|im_start|>assistant\nChecking.\n{tool_call}\n{tool_call}<|im_end|>\n"
        '<|im_start|>user\n<tool_response>\n{"temp": 3}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n3 degrees.<|im_end|>\n"
    )
    assert renderer.render(conversation, TOOLS) == expected
    conversation[2] = {**conversation[2], "content": None, "tool_calls": [as_sent]}
    assert f"<|im_start|>assistant\n{tool_call}<|im_end|>" in renderer.render(conversation, TOOLS)
    # no system turn: the tools get one of their own; no tools: the base template's own rendering
    assert renderer.render(conversation[1:2], TOOLS).startswith(f"<|im_start|>system\n{block}<|im_end|>")
    assert renderer.render(MULTI_TURN["messages"], None) == renderer.render(
        MULTI_TURN["messages"],
        None,
        template=(renderer.tokenizer.chat_template.split(tool_template.OWN_TEMPLATE)[1]),
    )
    assert not tool_template.extend_tools(renderer.tokenizer)  # extending an extended template changes nothing


def test_a_template_with_native_tool_support_is_used_natively(smol_tokenizer_dir, tmp_path):
    shutil.copytree(smol_tokenizer_dir, tmp_path / "tok")
    (tmp_path / "tok" / "chat_template.jinja").write_text(NATIVE_TOOLS_TEMPLATE)
    native = Renderer(fast_tokenizer(tmp_path / "tok"))
    assert native.support.native and not native.extended
    assert native.tokenizer.chat_template == NATIVE_TOOLS_TEMPLATE  # left exactly as it is
    [(ids, labels)] = tokenize.encode(native, TOOL_RECORD)
    assert "TOOLS [" in native.tokenizer.decode(ids)
    assert trained_text(native, labels) == 'CALL get_weather {"city": "Oslo"}<|im_end|>'


def test_a_template_that_rewrites_history_trains_each_turn_as_its_own_text(smol_tokenizer_dir, tmp_path):
    shutil.copytree(smol_tokenizer_dir, tmp_path / "tok")
    # renders earlier assistant turns differently from the last one, as reasoning templates that strip thoughts do
    (tmp_path / "tok" / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and not loop.last %}[old]"
        "{% else %}{{ m.content }}{% endif %}<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    renderer = Renderer(fast_tokenizer(tmp_path / "tok"))
    assert "one text per assistant turn" in renderer.training_template
    (ids1, labels1), (ids2, labels2) = tokenize.encode(renderer, MULTI_TURN)
    assert trained_text(renderer, labels1) == "Oslo.<|im_end|>" and trained_text(renderer, labels2) == "Lima.<|im_end|>"
    # the second text is the conversation as the model sees it at turn 2: the template's own history, untrained
    assert "assistant\n[old]<|im_end|><|im_start|>user\nAnd of Peru?" in renderer.tokenizer.decode(ids2)


def test_a_template_that_writes_the_end_of_turn_only_between_turns_gets_it_after_the_last(smol_tokenizer_dir):
    """Apertus writes <|assistant_end|> only when another turn follows; without it the model never learns to stop."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|assistant_end|>"]}, replace_extra_special_tokens=False
    )
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role == 'assistant' %}<|im_start|>{{ m.content }}{% if not loop.last %}"
        "<|assistant_end|>{% endif %}{% else %}<|im_start|>{{ m.role }} {{ m.content }}<|im_end|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>{% endif %}"
    )
    renderer = Renderer(tokenizer)
    assert renderer.turn_end == "<|assistant_end|>"
    assert tokenizer.convert_tokens_to_ids("<|assistant_end|>") in chat.stop_token_ids(tokenizer)
    [(ids, labels)] = tokenize.encode(renderer, MULTI_TURN)
    assert trained_text(renderer, labels) == "Oslo.<|assistant_end|>Lima.<|assistant_end|>"


@pytest.mark.parametrize(
    ("family", "template"), [("qwen3", "TRL's"), ("qwen3_5_nothink", "TRL's"), ("phi3_5", "the model's own")]
)
def test_families_whose_templates_rewrite_history_are_labelled_right(family, template, smol_tokenizer_dir):
    """Qwen3 drops earlier turns' thoughts: the prefix method alone refuses it (see above), and TRL's training
    template for the family, which renders the first prompt exactly as the model's own, is used for training.
    Phi-3.5 ends the conversation (not each turn) with eos: its own template works once that is allowed for. Every
    assistant turn is labelled: its content and its end-of-turn token, nothing of the prompts."""
    import trl.chat_template_utils as trl_templates
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.chat_template = getattr(trl_templates, f"{family}_chat_template")
    renderer = Renderer(tokenizer)
    assert renderer.training_template.startswith(template) and (renderer.training is not None) == (template == "TRL's")
    [(ids, labels)] = tokenize.encode(renderer, MULTI_TURN)
    trained = trained_text(renderer, labels)
    end = {"phi3_5": "<|end|>"}.get(family, "<|im_end|>")
    assert trained.replace("<think>\n\n</think>\n\n", "").startswith(f"Oslo.{end}"), trained
    assert f"Lima.{end}" in trained and "Peru" not in trained and "Norway" not in trained


# Gemma 2 has no system role and raises on one; Hermes 2 Pro's tool_use template loops over `tools` unguarded.
NO_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n{{ m.content }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
TOOLS_LOOP_TEMPLATE = (
    "<|im_start|>system\nTools:{% for tool in tools %} {{ tool.function.name }}{% endfor %}<|im_end|>\n"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_without_a_system_role_gets_the_system_prompt_in_the_first_user_turn(smol_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    renderer = Renderer(tokenizer)
    assert renderer.fold_system and renderer.no_tools is None
    [(ids, labels)] = tokenize.encode(renderer, MULTI_TURN)
    assert "<start_of_turn>user\nBe brief.\n\nCapital of Norway?<end_of_turn>" in tokenizer.decode(ids)
    [(ids, _)] = tokenize.encode(renderer, TOOL_RECORD)  # the tools open the first user turn
    assert (
        f"<start_of_turn>user\n{tool_template.TOOL_INSTRUCTIONS}\n<tools>" in tokenizer.decode(ids)
        and renderer.extended
    )
    trained = trained_text(renderer, labels)
    assert trained == "Oslo.<end_of_turn>Lima.<end_of_turn>", trained


def test_a_template_that_loops_over_tools_unguarded_gets_an_empty_list(smol_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.chat_template = TOOLS_LOOP_TEMPLATE
    renderer = Renderer(tokenizer)
    # it renders tools but not calls: extended, and the extension hands the base template [] for no tools
    assert renderer.extended and renderer.no_tools is None and not renderer.fold_system
    assert "Tools:<|im_end|>" in renderer.render(*renderer.prepare(TOOL_RECORD["messages"], TOOLS))
    assert trained_text(renderer, tokenize.encode(renderer, MULTI_TURN)[0][1]) == "Oslo.<|im_end|>Lima.<|im_end|>"


def splits(tmp_path, rows):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "val", "test"):
        write_jsonl(data / f"{name}.jsonl", rows)
    return data


LONG = {
    "id": "l:1",
    "meta": {"file": "l.jsonl", "line": 3},
    "messages": [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "short answer"}],
}


@pytest.mark.parametrize("policy", ["drop", "truncate", "error"])
def test_overlong_rows_follow_the_policy_and_are_counted(policy, tmp_path, smol_tokenizer_dir):
    data = splits(tmp_path, [MULTI_TURN, LONG])
    params = TokenizeParams(max_length=64, overlong=policy)
    if policy == "error":
        with pytest.raises(StepError, match=r"l.jsonl:3\) has \d+ tokens, over tokenize.max_length=64"):
            tokenize.run(params, smol_tokenizer_dir, data, tmp_path / "out")
        return
    stats = tokenize.run(params, smol_tokenizer_dir, data, tmp_path / "out")["splits"]["train"]
    assert stats["overlong"] == 1 and stats["max_tokens"] <= 64
    # truncating the long row cuts off its answer, so it has nothing left to train on and is dropped, counted
    key = "dropped_overlong" if policy == "drop" else "dropped_no_trainable_tokens"
    assert stats[key] == 1 and stats["rows"] == 1


def test_output_is_an_arrow_dataset_with_stats(tmp_path, smol_tokenizer_dir):
    from datasets import load_from_disk

    data = splits(tmp_path, [MULTI_TURN, TOOL_RECORD])
    stats = tokenize.run(TokenizeParams(), smol_tokenizer_dir, data, tmp_path / "out")
    dataset = load_from_disk(str(tmp_path / "out" / "dataset"))
    assert set(dataset) == {"train", "val", "test"} and dataset["train"]["id"] == ["m:1", "t:1"]
    train = stats["splits"]["train"]
    assert 0 < train["trainable_fraction"] < 1 and train["trainable_tokens"] == sum(
        sum(1 for x in row if x != IGNORE) for row in dataset["train"]["labels"]
    )
    assert stats["tool_format"].startswith("tunemake's extension")

    view = show_tokens.show(tmp_path / "out", smol_tokenizer_dir, "train", 0)
    trained = [line for line in view.splitlines()[1:] if line.split()[1] == "T"]
    assert "".join(ast.literal_eval(line.split(None, 3)[3]) for line in trained) == "Oslo.<|im_end|>Lima.<|im_end|>"


def test_no_trainable_tokens_anywhere_is_an_error(tmp_path, smol_tokenizer_dir):
    data = splits(tmp_path, [LONG])
    with pytest.raises(StepError, match="split 'train' has no trainable"):
        tokenize.run(TokenizeParams(max_length=32, overlong="truncate"), smol_tokenizer_dir, data, tmp_path / "out")


def test_worker_processes_give_the_same_rows_in_the_same_order(tmp_path, smol_tokenizer_dir, monkeypatch):
    """Large splits are tokenized by one worker process per core; the result must not depend on it."""
    from datasets import load_from_disk

    rows = [{**record, "id": f"{record['id']}-{n}"} for n in range(12) for record in (MULTI_TURN, TOOL_RECORD, LONG)]
    data = splits(tmp_path, rows)
    params = TokenizeParams(max_length=64, overlong="drop")
    one = tokenize.run(params, smol_tokenizer_dir, data, tmp_path / "one")
    monkeypatch.setattr(tokenize, "ROWS_PER_PROCESS", 8)
    monkeypatch.setattr(tokenize, "threads", lambda: 2)
    monkeypatch.setattr(tokenize, "BATCH", 5)  # batches that straddle the workers' shards
    two = tokenize.run(params, smol_tokenizer_dir, data, tmp_path / "two")
    train = one["splits"]["train"]
    assert one == two and 0 < train["rows"] < 36 and train["rows"] + train["dropped_overlong"] == 36
    first, second = (load_from_disk(str(tmp_path / name / "dataset"))["train"].to_dict() for name in ("one", "two"))
    assert first == second and len(first["id"]) == train["rows"]
    assert first["id"] == [row["id"] for row in rows if row["id"] in first["id"]]  # file order


def test_stop_tokens_are_the_special_end_of_turn_tokens_never_whitespace(smol_tokenizer_dir):
    """Gemma's tokenizer lists "\\n" among its added (not special) tokens and its template puts one after
    <end_of_turn>: the stop tokens must stay the end-of-turn marker and eos, or every answer stops at a newline."""
    from transformers import AutoTokenizer

    from tunemake.data.chat import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.add_tokens(["\n"])
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    newline = tokenizer.convert_tokens_to_ids("\n")
    assert newline in tokenizer(" Ok<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer)) == ["<|im_end|>"]
