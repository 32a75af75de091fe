"""The general prompts: the regression suite, replay, drift, checkable answers and batched llama.cpp answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tunemake.errors import StepError
from tunemake.evaluation import general
from tunemake.models import inference
from tunemake.models.precision import fast_weights_dtype
from tunemake.params.suite import SuiteParams

STOP = set(
    "a an and are can do does for give how i in into is it list me my name of on or say the to what which you".split()
)


def words(text: str) -> set[str]:
    """The content words of a prompt."""
    return set(re.findall(r"\w+", text.lower())) - STOP


def test_the_bundled_suite_is_varied_and_replay_never_shares_a_prompt_with_it():
    suite = general.load(general.PROMPTS / "general.jsonl")
    replay = general.load(general.PROMPTS / "replay.jsonl")
    assert len(suite) >= 60 and len(replay) >= 100
    kinds = {p.kind for p in suite}
    assert {"howto", "fact", "arithmetic", "writing", "translation", "list", "refusal"} <= kinds
    assert sum(bool(p.answer) for p in suite) >= 20  # checkable: arithmetic, capitals, translations
    # No replay prompt is a suite prompt, nor a near copy of one (most of its words shared), or the suite would
    # measure recall of the replayed answers instead of what the fine-tune did to everything else.
    for r in replay:
        for s in suite:
            a, b = words(r.prompt), words(s.prompt)
            assert len(a & b) / len(a | b) < 0.5, (r.prompt, s.prompt)


def test_each_prompt_is_asked_under_each_system_turn(smol_tokenizer_dir):
    from transformers import AutoTokenizer

    from tunemake.steps.suite import conversations

    rows = conversations(SuiteParams(limit=2, every_system=True))
    assert [r["id"] for r in rows] == [f"bundled:{i}:{s}" for i in (0, 65) for s in ("template", "empty", "unrelated")]
    # by default each prompt gets one system turn in turn, by its number in the file: a third of the work
    rotated = conversations(SuiteParams())
    assert [r["id"] for r in rotated[:4]] == [
        "bundled:0:template",
        "bundled:1:empty",
        "bundled:2:unrelated",
        "bundled:3:template",
    ]
    assert len(rotated) == 66
    rendered = inference.render(AutoTokenizer.from_pretrained(smol_tokenizer_dir), rows[:3])
    # SmolLM2's template inserts its own default system turn when a conversation has none
    assert "You are a helpful AI assistant named SmolLM" in rendered[0]
    assert "<|im_start|>system\n<|im_end|>" in rendered[1]
    assert general.SYSTEMS["unrelated"] in rendered[2]


def test_a_bad_prompt_line_names_the_file_the_line_and_the_fix(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "fine"}\n\n{"prompt": ""}\n')
    with pytest.raises(
        StepError, match=rf"{re.escape(str(path))}:3: not a prompt \(prompt: String should have at least 1"
    ):
        general.load(path)
    path.write_text('{"prompt": "fine", "answers": ["typo"]}\n')
    with pytest.raises(StepError, match=r"mine.jsonl:1: not a prompt \(answers: Extra inputs are not permitted\)"):
        general.load(path)
    path.write_text('{"prompt": "fine"\n')
    with pytest.raises(StepError, match=r"mine.jsonl:1: not a prompt \(Expecting ',' delimiter\).*\"answer\""):
        general.load(path)


def test_a_users_prompt_file_joins_the_suite(tmp_path):
    from tunemake.steps.suite import conversations

    mine = tmp_path / "critical.jsonl"
    mine.write_text(json.dumps({"prompt": "What is our refund window?", "answer": ["30 days"]}) + "\n")
    rows = conversations(SuiteParams(bundled=False, prompts=str(mine), systems=["empty"]))
    assert [(r["id"], r["answer"]) for r in rows] == [("critical.jsonl:0:empty", ["30 days"])]


@pytest.mark.parametrize(
    ("answer", "accepted", "score"),
    [
        ("7 times 8 is 56.", ["56"], 1.0),
        ("The answer is 560.", ["56"], 0.0),  # a whole word, not a prefix
        ("It is Paris, of course", ["paris"], 1.0),
        ("Buenos días!", ["buenos días", "buenos dias"], 1.0),
        ("No idea", [], None),
    ],
)
def test_checkable_answers_match_whole_words(answer, accepted, score):
    assert general.checkable(answer, accepted) == score


def overtrain(model, tokenizer, steps: int, lr: float = 1e-2):
    """A deliberately over-trained copy: many steps on one narrow row, as a too-hot fine-tune does."""
    import copy

    import torch

    tuned = copy.deepcopy(model).train()
    ids = tokenizer('<tool_call> {"name": "get_weather"} </tool_call>' * 4, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        tuned(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    return tuned.eval()


def test_drift_is_zero_for_the_base_and_grows_with_over_training(tiny_llama_dir):
    import statistics

    import torch

    rows = general.conversations(general.load(general.PROMPTS / "general.jsonl")[:8], ["template", "empty"])
    model, tokenizer, generate = inference.load_model(tiny_llama_dir, 12)
    prompts = inference.render(tokenizer, rows)
    with torch.inference_mode():
        answers, _ = inference.hf_answers(model, tokenizer, prompts, generate, batch_size=4)
        base = inference.answer_losses(model, tokenizer, prompts, answers, batch_size=4)
        again = inference.answer_losses(model, tokenizer, prompts, answers, batch_size=4)
    assert base == again  # deterministic: the base against itself drifts exactly 0
    drift = []
    for steps in (5, 40):
        tuned = overtrain(model, tokenizer, steps)
        with torch.inference_mode():
            drift.append(
                statistics.mean(inference.answer_losses(tuned, tokenizer, prompts, answers, 4)) - statistics.mean(base)
            )
    assert 0 < drift[0] < drift[1] and drift[1] > 1.0, drift


def test_sampled_answers_repeat_with_the_seed_and_change_with_it(tiny_llama_dir):
    """What hf_answers guarantees on every CPU: the same prompts, batch size and seed give the same answers, and
    another seed gives others. Across batch sizes only each prompt's draws are fixed (the next test), not the rounding
    of its probabilities: on an AVX2-only EPYC one of these six answers ended differently in batches of 2."""
    import torch

    rows = general.conversations(general.load(general.PROMPTS / "general.jsonl")[:6], ["template"])
    model, tokenizer, generate = inference.load_model(tiny_llama_dir, 12)
    prompts = inference.render(tokenizer, rows)
    hot = {**generate, **inference.sampling(temperature=1.5, top_p=0.95)}
    with torch.inference_mode():
        greedy, _ = inference.hf_answers(model, tokenizer, prompts, generate, batch_size=4)
        for batch_size in (4, 3):
            sampled, _ = inference.hf_answers(model, tokenizer, prompts, hot, batch_size=batch_size, seed=3)
            assert inference.hf_answers(model, tokenizer, prompts, hot, batch_size=batch_size, seed=3)[0] == sampled
            reseeded, _ = inference.hf_answers(model, tokenizer, prompts, hot, batch_size=batch_size, seed=4)
            assert sum(a != b for a, b in zip(reseeded, sampled)) >= 4  # flat distributions: nearly every answer moves
    assert model.dtype == torch.float32 and len(set(sampled)) > 1 and sampled != greedy


def test_a_rows_draws_come_from_its_own_generator_whatever_shares_its_batch():
    """Nucleus draws each row's token with that row's generator: a row alone and the same row among five others draw
    the same tokens from the same scores (softmax, top-k, sort and draw all run row by row)."""
    import torch

    torch.manual_seed(0)
    scores = torch.randn(6, 49152) * torch.tensor([[1.0], [8.0], [8.0], [1.0], [8.0], [2.0]])  # wide and narrow nuclei
    sampler = inference.Nucleus(temperature=0.7, top_p=0.95)

    def draws(rows: list[int]) -> list[list[int]]:
        sampler.generators = [torch.Generator().manual_seed(10 + i) for i in rows]
        return [sampler(None, scores[rows]).argmax(-1).tolist() for _ in range(8)]

    together = draws(list(range(6)))
    for i in range(6):
        assert [step[0] for step in draws([i])] == [step[i] for step in together]
    assert len({tuple(step) for step in together}) > 1  # the draws move from step to step


# a flat distribution (nucleus wider than 256 tokens), a peaked one, and a batch of both (only flat rows get the sort)
@pytest.mark.parametrize("spread", [1.0, 8.0, [[1.0], [8.0], [8.0], [1.0], [8.0], [8.0]]])
def test_the_nucleus_is_transformers_top_p_after_temperature(spread):
    """Nucleus keeps exactly the tokens transformers' TemperatureLogitsWarper + TopPLogitsWarper keep, and draws
    only from them."""
    import torch
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    scores = torch.randn(6, 49152) * torch.tensor(spread)
    sampler = inference.Nucleus(temperature=0.7, top_p=0.95)
    ours = torch.stack(
        [
            torch.zeros_like(row, dtype=torch.bool).scatter(-1, index, weights > 0)
            for row, (weights, index) in zip(scores, sampler.nucleus(scores))
        ]
    )
    theirs = TopPLogitsWarper(0.95)(None, TemperatureLogitsWarper(0.7)(None, scores)) > -float("inf")
    assert torch.equal(ours, theirs) and ours.sum() > len(scores)  # some rows keep several tokens
    for _ in range(20):
        drawn = sampler(None, scores).argmax(-1)
        assert theirs.gather(-1, drawn[:, None]).all()


def test_replay_keeps_the_finished_answers_in_the_fast_dtype(tiny_llama_dir, tmp_path):
    """replay answers in transformers, in bfloat16 where the CPU has it, and every prompt is kept or counted as
    dropped (a random model's answers run past 6 tokens: dropped as unfinished, never cut)."""
    from tunemake.data.jsonl import read_jsonl
    from tunemake.params.replay import ReplayParams
    from tunemake.steps import replay

    stats = replay.run(ReplayParams(limit=10, max_new_tokens=6, temperature=0), tiny_llama_dir, tmp_path / "replay")
    rows = read_jsonl(tmp_path / "replay" / "rows.jsonl")
    assert stats["dtype"] == fast_weights_dtype() and stats["prompts"] == 10
    assert stats["rows"] == len(rows) and len(rows) + sum(stats["dropped"].values()) == 10
    assert stats["dropped"]["unfinished"] > 0


def test_replay_off_writes_no_rows_and_loads_no_model(tmp_path):
    """prepare.replay: 0: the step as its rule runs it, in a fresh interpreter, imports no torch and never reads the
    base (the path given does not exist)."""
    import subprocess
    import sys

    import yaml

    from conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["replay"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["replay", "--params", str(tmp_path / "params.yaml"), "--base", str(tmp_path / "no-base"), "--out"]
    code = (
        "import sys; from tunemake import cli; code = cli.main(sys.argv[1:]); "
        "print(code, sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv, str(tmp_path / "out")], capture_output=True, text=True, check=True
    )
    assert done.stdout == "0 []\n", done.stderr
    assert (tmp_path / "out" / "rows.jsonl").read_text() == ""
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["enabled"] is False


@pytest.mark.parametrize(
    "config_class, extra",
    [
        ("LlamaConfig", {}),
        ("Qwen3Config", {"head_dim": 16}),
        ("Gemma3TextConfig", {"head_dim": 16, "sliding_window": 8}),
    ],
)
def test_answer_logps_with_shared_prompts_equal_each_sequence_scored_whole(
    tmp_path, smol_tokenizer_dir, config_class, extra
):
    """Each distinct prompt runs once and its KV cache serves each of its answers, in any row; prompts that begin
    alike run that beginning once per batch: the same log-probabilities as scoring every prompt + answer on its
    own, for prompts and answers of other lengths in one batch (Gemma 3's sliding window shorter than the prompts,
    where beginnings are not shared)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conftest import tiny_model

    model_dir = tiny_model(tmp_path, AutoTokenizer.from_pretrained(smol_tokenizer_dir), 32, config_class, **extra)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    generator = torch.Generator().manual_seed(0)
    draw = lambda n: torch.randint(3, 1000, (n,), generator=generator).tolist()  # noqa: E731
    system = draw(9)  # a beginning four prompts share
    prompts = [draw(5), system + draw(8), draw(11), system + draw(14), system + draw(3), system + draw(1)]
    rows = [(prompts[p], [draw(n) for n in answers]) for p, answers in [(0, [1, 4]), (1, [6, 2]), (2, [3, 3, 2])]]
    rows += [(prompts[p], [draw(n) for n in answers]) for p, answers in [(3, [9, 1]), (1, [5]), (4, [2]), (5, [7])]]
    batches = inference.prompt_batches(list({tuple(p) for p, _ in rows}), batch_size=3, share_from=4)
    assert [len(chunk) for chunk, shared in batches if shared] == [3]  # three of them share the 9 tokens
    with torch.inference_mode():
        scored = inference.answer_logps(model, rows, batch_size=3, pad=0, share_from=4)
        for (prompt, answers), logps_each in zip(rows, scored):
            for answer, logps in zip(answers, logps_each):
                whole = model(input_ids=torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
                alone = whole[len(prompt) - 1 : -1].gather(1, torch.tensor(answer)[:, None]).squeeze(1)
                torch.testing.assert_close(logps, alone, atol=1e-5, rtol=1e-5)


def test_prompts_copy_the_longest_prefix_they_share_and_decode_their_own_last_token():
    from tunemake.llama.llamacpp import shared_prefixes

    prompts = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6], [1, 2, 6, 7], [1, 2, 6, 7], [9]]  # sorted, as answer sorts
    # Each copies from the earliest prompt that holds its shared tokens, so it need not wait for its neighbour:
    # [1, 2, 6] from the first; [1, 2, 6, 7] takes all of [1, 2, 6]; its twin takes as much, all but its last token,
    # whose logits it needs, and from [1, 2, 6] too; [9] shares nothing.
    assert shared_prefixes(prompts) == [(None, 0), (0, 3), (0, 2), (2, 3), (2, 3), (None, 0)]


def first_difference_is_a_near_tie(llm, prompt: str, one: str, other: str, within: float = 0.05) -> bool:
    """Whether two greedy answers to `prompt` are equal, or part where the two likeliest next tokens' logits are
    within `within` of each other (decoding the prompt and their shared text one token at a time): where batch
    shapes change the kernels' summation order, only such a tie may round the other way."""
    import numpy as np

    if one == other:
        return True
    split = next((i for i, (a, b) in enumerate(zip(one, other)) if a != b), min(len(one), len(other)))
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    llm.reset()
    llm.eval(tokens)
    generated = []
    while True:
        logits = np.asarray(llm.scores[llm.n_tokens - 1])
        second, first = np.partition(logits, -2)[-2:]
        generated.append(int(logits.argmax()))
        text = llm.detokenize(generated).decode(errors="ignore").lstrip()  # the answers are stripped
        if len(text) > split or generated[-1] == llm.token_eos() or len(generated) > 64:
            return bool(first - second <= within)
        llm.eval(generated[-1:])


def test_batched_llama_cpp_answers_equal_one_at_a_time(smol_tokenizer_dir):
    """The low-level batched decoder gives the greedy answers of decoding each prompt alone, and of llama-cpp-python's
    chat completion on the file's own template, as a user of the file calls it (real SmolLM2). Batched, the prompts
    share their system turns' KV cache, two levels deep (shared_prefixes). Other batch shapes sum in another order,
    so an answer may part only at a near tie (first_difference_is_a_near_tie); bit-equality is not guaranteed."""
    from transformers import AutoTokenizer

    from tunemake.llama.llamacpp import answer, file_template, load, shared_prefixes
    from tunemake.models.weights import resolve
    from tunemake.params.base import BaseParams

    rows = general.conversations(general.load(general.PROMPTS / "general.jsonl")[10:13], ["template", "unrelated"])
    prompts = inference.render(AutoTokenizer.from_pretrained(smol_tokenizer_dir), rows)
    llm = load(Path(resolve(BaseParams())["path"]))
    tokens = [llm.tokenize(p.encode(), add_bos=False, special=True) for p in prompts]
    streams = sorted(range(len(prompts)), key=lambda i: tokens[i])  # the order answer gives them their KV streams
    plan = shared_prefixes([tokens[i] for i in streams])
    assert sum(source is not None for source, _ in plan) == len(prompts) - 1
    assert any(plan[source][0] is not None for source, _ in plan if source is not None)  # a copy of a copy
    alone = answer(llm, prompts, 12, parallel=1)
    together = answer(llm, prompts, 12, parallel=len(prompts))
    assert all(map(first_difference_is_a_near_tie, [llm] * len(prompts), prompts, alone[0], together[0]))
    stopped = [together[1][i] for i in streams]
    assert stopped[0] and not stopped[-1]  # the last stream's answer moves into the first's mid-answer (compact)
    assert all(text for text in together[0])
    assert [file_template(llm)(messages=row["messages"]).prompt for row in rows] == prompts
    served = [
        llm.create_chat_completion(messages=row["messages"], temperature=0.0, max_tokens=12)["choices"][0]["message"]
        for row in rows
    ]
    served = [message["content"].strip() for message in served]
    assert all(map(first_difference_is_a_near_tie, [llm] * len(prompts), prompts, served, together[0]))


def test_the_base_becomes_a_gguf_once_with_its_own_chat_template(tiny_llama_dir, converter_dir, tmp_path, monkeypatch):
    """The suite, replay and baseline answer with the base through llama.cpp: its 16-bit GGUF is made once per base
    (the second call converts nothing) in the cache, never in results/, and carries results/base's chat template, so
    base.chat_template reaches it too."""
    from tunemake.llama.llamacpp import base_gguf, load
    from tunemake.params.base import BaseParams
    from tunemake.steps import base as base_step

    monkeypatch.setenv("TUNEMAKE_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    base_step.run(BaseParams(model=str(tiny_llama_dir)), results / "base")
    made = base_gguf(results / "base", converter_dir)
    assert made.is_relative_to(tmp_path / "cache") and not list(results.rglob("*.gguf"))
    stamp = made.stat().st_mtime_ns
    assert base_gguf(results / "base", converter_dir) == made and made.stat().st_mtime_ns == stamp
    assert load(made).metadata["tokenizer.chat_template"] == (results / "base" / "chat_template.jinja").read_text()

    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: ")
    base_step.run(BaseParams(model=str(tiny_llama_dir), chat_template=str(template)), results / "custom")
    custom = base_gguf(results / "custom", converter_dir)
    assert custom != made and load(custom).metadata["tokenizer.chat_template"].endswith(template.read_text())
