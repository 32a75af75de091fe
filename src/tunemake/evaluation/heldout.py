"""What baseline and evaluate share: one model scored on the held-out test split.

A transformers model (score_transformers): teacher-forced loss on the assistant tokens, each held-out preference pair's
log-likelihoods, its loss on the base's general answers (drift), and the timed rows answered one at a time; a GGUF
file (score_gguf): every test row asked through llama-server as an OpenAI client asks it, tools included (or, with
eval.served off, answered at once in-process through llama.cpp's batched decoding), and the timed rows through
llama-cpp-python's chat API. Each runs in a fresh process (in_fresh_process), so its peak
memory is its own.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from tunemake.data.chat import Renderer, encode_pair, format_call, openai_messages
from tunemake.data.jsonl import read_jsonl
from tunemake.errors import StepError
from tunemake.evaluation import general
from tunemake.models import inference
from tunemake.models.precision import scoring_context, scoring_precision
from tunemake.models.weights import frozen_in_autocast_dtype
from tunemake.params.eval import EvalParams
from tunemake.runtime import peak_rss_mb


def examples(test_file: Path, limit: int | None) -> list[dict]:
    """Prompt, reference text and reference calls of each test row; the reference is its last assistant turn."""
    records = read_jsonl(test_file)
    out = []
    for record in [records[i] for i in general.spread(len(records), limit or len(records))]:
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        reference = messages[last]
        calls = [format_call(call) for call in reference.get("tool_calls") or []]
        out.append(
            {
                "id": record["id"],
                "prompt": messages[:last],
                "tools": record.get("tools") or [],
                "reference": "\n".join(filter(None, [reference["content"], *calls])),
                "reference_calls": reference.get("tool_calls") or [],
            }
        )
    return out


class FirstTokenTimer:
    """A generate() streamer that notes when the first new token arrives (the first put() is the prompt)."""

    def __init__(self):
        self.puts, self.first = 0, None

    def put(self, value):
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self):
        pass


def score_transformers(
    model_dir: str,
    tokenized: str,
    answer_all: bool,
    pairs: list[dict],
    rows: list[dict],
    params: dict,
    suite: dict | None,
) -> dict:
    """Loss, answers, preference-pair log-probabilities and speed of a transformers model, and its loss on the base's
    general answers when given the suite (runs in its own process). With answer_all false it answers only the timed
    rows: the model's answers come from its 16-bit GGUF, and the timed rows check that both engines agree. The
    teacher-forced passes run in scoring_precision (tunemake.models.precision); answers are generated in float32."""
    import torch

    params = EvalParams(**params)
    model, tokenizer, generate = inference.load_model(model_dir, params.max_new_tokens)
    renderer = Renderer(tokenizer)
    prompts = [renderer.render(*renderer.prepare(r["prompt"], r["tools"]), add_generation_prompt=True) for r in rows]
    result = {"scoring_precision": scoring_precision()}
    kept = frozen_in_autocast_dtype(model, result["scoring_precision"])  # else autocast casts them every pass
    with scoring_context():
        result["loss"], result["pairs"] = loss_and_pairs(
            model, renderer, held_out_rows(Path(tokenized), {r["id"] for r in rows}), pairs, params.batch_size
        )
        if suite:  # drift: the base and the tuned model, each in this step, so both losses are computed alike
            started, base = time.perf_counter(), [row["answer"] for row in suite["base"]]
            result["drift_losses"] = inference.answer_losses(
                model, tokenizer, suite["prompts"], base, suite["batch_size"]
            )
            result["drift_seconds"] = time.perf_counter() - started
    for tensor, data in kept:  # answers are generated in float32
        tensor.data = data
    with torch.inference_mode():
        if answer_all:
            result["answers"], result["stopped"] = inference.hf_answers(
                model, tokenizer, prompts, generate, params.batch_size
            )
        timed = general.spread(len(rows), params.speed_rows)
        # one at a time, as served
        result["timings"], result["timed_answers"] = zip(
            *(time_one(model, tokenizer, prompts[i], generate) for i in timed)
        )
        result["timed_rows"] = timed
    return {**result, "peak_rss_mb": peak_rss_mb()}


def held_out_rows(tokenized: Path, ids: set[str]) -> list[tuple[list[int], list[int], list[bool]]]:
    """The evaluated test rows as tokenize wrote them: each one's tokens before its first trained (assistant) token,
    the tokens from there, and which of those are trained."""
    import datasets

    from tunemake.training.loss import IGNORE

    datasets.disable_caching()  # filter() must not write cache files into results/tokenized, another step's output
    # a row tokenized as one text per assistant turn has ids row#1, row#2...
    test = datasets.load_from_disk(str(tokenized / "dataset"))["test"]
    test = test.filter(lambda r: r["id"] in ids or r["id"].rpartition("#")[0] in ids)
    out = []
    for row in test.select_columns(["input_ids", "labels"]):
        first = max(1, next((i for i, label in enumerate(row["labels"]) if label != IGNORE), len(row["labels"])))
        out.append((row["input_ids"][:first], row["input_ids"][first:], [x != IGNORE for x in row["labels"][first:]]))
    return [row for row in out if any(row[2])]


def loss_and_pairs(
    model, renderer: Renderer, held_out: list[tuple], pairs: list[dict], batch_size: int
) -> tuple[float, list[tuple[float, float]]]:
    """The teacher-forced loss per trained token over the held-out rows (the training loss, on rows it never saw),
    and each preference pair's summed log-probability of its chosen and of its rejected answer after the prompt,
    rendered with the training template as DPO scores them (tunemake.data.chat.encode_pair). One answer_logps call: a
    pair whose prompt is a test row's (35 of the default's 45) shares that row's prompt pass."""
    import torch

    encoded = [encode_pair(renderer, pair) for pair in pairs]
    rows = [(prompt, [rest]) for prompt, rest, _ in held_out]
    rows += [(ids["prompt_ids"], [ids["chosen_ids"], ids["rejected_ids"]]) for ids in encoded]
    scored = inference.answer_logps(model, rows, batch_size, renderer.tokenizer.pad_token_id or 0)
    trained = [torch.tensor(mask) for _, _, mask in held_out]
    total = sum(-logps[mask].sum().item() for (logps,), mask in zip(scored, trained))
    count = sum(int(mask.sum()) for mask in trained)
    pair_sums = [(chosen.sum().item(), rejected.sum().item()) for chosen, rejected in scored[len(held_out) :]]
    return total / max(count, 1), pair_sums


def time_one(model, tokenizer, prompt: str, generate: dict) -> tuple[tuple, str]:
    """(prompt tokens, generated tokens, time to first token, time after it) for one request, and its answer."""
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    timer, started = FirstTokenTimer(), time.perf_counter()
    output = model.generate(**encoded, **generate, streamer=timer)
    ended = time.perf_counter()
    prompt_tokens = encoded["input_ids"].shape[1]
    answer = tokenizer.decode(output[0, prompt_tokens:], skip_special_tokens=True).strip()
    return (prompt_tokens, output.shape[1] - prompt_tokens, timer.first - started, ended - timer.first), answer


def score_gguf(path: str, tokenizer_dir: str, rows: list[dict], params: dict, suite: dict | None) -> dict:
    """Answers and speed of a GGUF file, and its general answers when given the suite (runs in its own process).

    With eval.served (the default) the file answers as users call it: llama-server --jinja renders each row's
    messages and OpenAI `tools` with the file's own chat template, and its answer is the server's text plus its
    parsed `tool_calls` (`calls`: a call the server did not parse counts as none). Otherwise llama-cpp-python
    answers in-process, rendering as its chat completion does, all rows at once (batched decoding). Either way the
    timed rows go one at a time through llama-cpp-python's create_chat_completion, where llama.cpp's own counters
    time them."""
    import llama_cpp
    from transformers import AutoTokenizer

    from tunemake.llama.llamacpp import answer, file_template, load

    params = EvalParams(**params)
    renderer = Renderer(AutoTokenizer.from_pretrained(tokenizer_dir))
    prepared = [renderer.prepare(row["prompt"], row["tools"]) for row in rows]
    llm = load(Path(path), n_ctx=4096)
    if params.served:
        result = served_answers(Path(path), rows, params, suite)
    else:
        template = file_template(llm)
        prompts = [template(messages=messages, tools=tools).prompt for messages, tools in prepared]
        answers, stopped = answer(llm, prompts, params.max_new_tokens, parallel=params.batch_size)
        result = {"answers": answers, "stopped": stopped}
        if suite:
            started = time.perf_counter()
            result["general"] = dict(
                zip(("answers", "stopped"), answer(llm, suite["prompts"], suite["max_new_tokens"]))
            )
            result["general"]["seconds"] = time.perf_counter() - started
    timings = []
    for messages, tools in (prepared[i] for i in general.spread(len(rows), params.speed_rows)):
        llm.reset()  # no prompt cache carried between rows: each is timed from a cold prompt, like the HF rows
        llama_cpp.llama_perf_context_reset(llm.ctx)
        started = time.perf_counter()
        llm.create_chat_completion(messages=messages, tools=tools, temperature=0.0, max_tokens=params.max_new_tokens)
        elapsed = time.perf_counter() - started
        # llama.cpp's own counters: the prompt's evaluation ends when the first token can be sampled; n_eval counts
        # the tokens decoded after that one.
        perf = llama_cpp.llama_perf_context(llm.ctx)
        timings.append((perf.n_p_eval, perf.n_eval + 1, perf.t_p_eval_ms / 1000, elapsed - perf.t_p_eval_ms / 1000))
    return {**result, "loss": None, "timings": timings, "peak_rss_mb": peak_rss_mb()}


def served_answers(gguf: Path, rows: list[dict], params: EvalParams, suite: dict | None) -> dict:
    """Each row as an application asks a served model, through the openai client: its messages and `tools` to
    llama-server --jinja's chat completions, greedy, `served_parallel` requests at once (continuous batching). The
    suite's prompts, already rendered, go to its completions endpoint."""
    from openai import OpenAI

    from tunemake.llama.llamaserver import serving

    with serving(gguf, parallel=params.served_parallel, ctx_size=4096) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)

        def chat(row: dict) -> tuple[str, str, str]:
            choice = client.chat.completions.create(
                model=gguf.name,
                messages=openai_messages(row["prompt"]),
                **({"tools": row["tools"]} if row["tools"] else {}),
                temperature=0.0,
                max_tokens=params.max_new_tokens,
            ).choices[0]
            calls = "\n".join(
                format_call({"function": {"name": c.function.name, "arguments": json.loads(c.function.arguments)}})
                for c in choice.message.tool_calls or []
            )
            return "\n".join(filter(None, [(choice.message.content or "").strip(), calls])), calls, choice.finish_reason

        def complete(prompt: str) -> tuple[str, bool]:
            choice = client.completions.create(
                model=gguf.name, prompt=prompt, temperature=0.0, max_tokens=suite["max_new_tokens"]
            ).choices[0]
            return choice.text.strip(), choice.finish_reason != "length"

        with ThreadPoolExecutor(params.served_parallel) as pool:
            answers, calls, finish = zip(*pool.map(chat, rows))
            started = time.perf_counter()
            answered = list(pool.map(complete, suite["prompts"])) if suite else []
    result = {
        "answers": list(answers),
        "stopped": [reason != "length" for reason in finish],
        "calls": list(calls),
        "answered_with_tool_calls": sum(
            reason == "tool_calls" and bool(call)
            for row, call, reason in zip(rows, calls, finish)
            if row["reference_calls"]
        ),
    }
    if suite:
        general_answers, stopped = zip(*answered)
        result["general"] = {
            "answers": list(general_answers),
            "stopped": list(stopped),
            "seconds": time.perf_counter() - started,
        }
    return result


# What every model's process imports: the forkserver imports them once, and each process forked from it starts
# with them (about 8 s each on 2 cores otherwise). The server runs no torch op, so no thread pool or CUDA context
# is forked.
PRELOAD = [
    "tunemake.evaluation.heldout",
    "tunemake.llama.llamacpp",
    "llama_cpp",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
]


def in_fresh_process(function, *args) -> dict:
    """function(*args) in a process of its own, forked from a server process that imported PRELOAD, so its peak
    memory is its own and its imports are not paid again."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def read_test_rows(data: Path, params: EvalParams) -> list[dict]:
    rows = examples(data / "test.jsonl", params.limit)
    if not rows:
        raise StepError(f"{data / 'test.jsonl'} has no rows to evaluate; give prepare.split.test a share of the data")
    return rows


def read_test_pairs(pairs_dir: Path | None, params: EvalParams) -> list[dict]:
    pairs = read_jsonl(pairs_dir / "test.jsonl") if pairs_dir else []
    return [pairs[i] for i in general.spread(len(pairs), params.limit or len(pairs))]


def suite_request(suite_dir: Path) -> dict:
    """What a transformers model needs to measure drift: the suite's rendered prompts and the base's answers."""
    suite = read_jsonl(suite_dir / "suite.jsonl")
    settings = json.loads((suite_dir / "manifest.json").read_text())
    return {
        "prompts": [r["rendered"] for r in suite],
        "base": [r["base"] for r in suite],
        "max_new_tokens": settings["max_new_tokens"],
        "batch_size": settings["batch_size"],
    }
