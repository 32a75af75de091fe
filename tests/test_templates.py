"""The real chat templates llama.cpp ships (models/templates in the pinned llama-cpp-python sdist, fetched as the
converter step fetches it): three conversations each, tokenized as training rows. The labelled tokens of each
assistant turn must hold its answer and end with a special token (its end of turn), and hold nothing of the
prompts. The tokenizer is SmolLM2's with the special tokens of each family's rendered text added, as that family's
own tokenizer has them."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from tunemake.data.chat import Renderer
from tunemake.steps import converter, tokenize
from tunemake.training.loss import IGNORE

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
SYSTEM, ASK = {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Norway?"}
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
}
CONVERSATIONS = {  # name -> (messages, tools, what each assistant turn's labels must hold)
    "one": ([SYSTEM, ASK, {"role": "assistant", "content": "Oslo."}], [], ["Oslo."]),
    "two": (
        [
            SYSTEM,
            ASK,
            {"role": "assistant", "content": "Oslo."},
            {"role": "user", "content": "And of Peru?"},
            {"role": "assistant", "content": "Lima."},
        ],
        [],
        ["Oslo.", "Lima."],
    ),
    "tool": (
        [
            SYSTEM,
            {"role": "user", "content": "Weather in Oslo?"},
            CALL,
            {"role": "tool", "content": '{"temp": 3}'},
            {"role": "assistant", "content": "It is 3 degrees."},
        ],
        TOOLS,
        ["get_weather", "It is 3 degrees."],
    ),
}
PROMPT_TEXT = ("Norway", "Peru", "Be brief", "temp")
# The cases the template itself cannot render, and the error it raises. Anything else failing, any of these passing
# or failing otherwise, fails the test.
EXPECTED_FAILURES = {
    # reads a `functions` variable of its own, never `tools`
    **{("fireworks-ai-llama-3-firefunction-v2", name): "'functions' is undefined" for name in CONVERSATIONS},
    # needs an `id` on each tool call; the rows' calls carry none
    ("unsloth-Apriel-1.5", "tool"): "has no attribute 'id'",
}
MARKER = re.compile(r"<[^<>\s'\"{}]{1,60}>|\[/?[A-Z_]+\]|\[e~\[|\]~b\]|\]~!b\[|\]<\]minimax\[>\[")


@pytest.fixture(scope="module")
def templates():
    folder = converter.fetch(version("llama-cpp-python")) / converter.TEMPLATES
    return sorted(folder.glob("*.jinja"))


def family_tokenizer(smol_tokenizer_dir, template: str):
    """SmolLM2's tokenizer with this template and, as special tokens, the markers it renders."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.chat_template = template
    rendered = ""
    for messages, tools, _ in CONVERSATIONS.values():
        try:
            rendered += tokenizer.apply_chat_template(messages, tools=tools or [], tokenize=False)
        except Exception:  # the case itself reports it
            pass
    markers = sorted(set(MARKER.findall(template + rendered)) - {"<tool_call>", "</tool_call>"})
    tokenizer.add_special_tokens({"additional_special_tokens": markers}, replace_extra_special_tokens=False)
    return tokenizer


def labelled_turns(renderer: Renderer, messages, tools) -> tuple[list[str], str]:
    """The text of each run of labelled tokens, and the token view ([[labelled]]) to print on failure."""
    turns, view = [], []
    for ids, labels in tokenize.encode(renderer, {"id": "case", "messages": messages, "tools": tools}):
        run = []
        for token, label in [*zip(ids, labels), (None, IGNORE)]:
            if label != IGNORE:
                run.append(token)
            elif run:
                turns.append(renderer.tokenizer.decode(run))
                run = []
        view.append(
            "".join(
                f"[[{p}]]" if lab != IGNORE else p
                for p, lab in zip(map(renderer.tokenizer.decode, ([i] for i in ids)), labels)
            )
        )
    return turns, "\n---\n".join(view)


def check(renderer: Renderer, name: str) -> str | None:
    """None when every assistant turn is labelled right, else what is wrong (with the token view)."""
    messages, tools, wanted = CONVERSATIONS[name]
    turns, view = labelled_turns(renderer, messages, tools)
    wrong = len(turns) != len(wanted) or any(
        want not in turn
        or not any(turn.rstrip().endswith(token) for token in renderer.specials)
        or any(text in turn for text in PROMPT_TEXT)
        for want, turn in zip(wanted, turns)
    )
    return f"labelled {turns!r}\n{view}" if wrong else None


def test_every_real_template_labels_each_answer_and_its_end_of_turn(templates, smol_tokenizer_dir):
    assert len(templates) >= 70
    failures = {}
    for path in templates:
        tokenizer = family_tokenizer(smol_tokenizer_dir, path.read_text(encoding="utf-8"))
        try:
            renderer = Renderer(tokenizer)
        except Exception as err:
            failures.update({(path.stem, name): f"{type(err).__name__}: {err}" for name in CONVERSATIONS})
            continue
        for name in CONVERSATIONS:
            try:
                problem = check(renderer, name)
            except Exception as err:
                problem = f"{type(err).__name__}: {err}"
            if problem:
                failures[(path.stem, name)] = problem
    cases = 3 * len(templates)
    print(f"template matrix: {cases - len(failures)} of {cases} cases pass")
    unexpected = {case: why for case, why in failures.items() if EXPECTED_FAILURES.get(case, "\0") not in why}
    fixed = set(EXPECTED_FAILURES) - set(failures)
    assert not unexpected, "\n\n".join(f"{t} / {c}:\n{why}" for (t, c), why in unexpected.items())
    assert not fixed, f"these now pass: take them out of EXPECTED_FAILURES: {sorted(fixed)}"
