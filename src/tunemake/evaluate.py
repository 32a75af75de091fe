"""evaluate: the base model, the tuned (merged) model and every GGUF file on the held-out test split.

For each model: teacher-forced loss and perplexity on the assistant tokens (transformers models), greedy answers
scored against the reference (exact match, ROUGE-L, and the schema-aware tool-call scores of tunemake.scoring),
and speed (prompt and generation tokens/s, time to first token, the process's peak memory). Each model runs in a
fresh process, so its peak memory is its own and no model's memory lingers into the next one.

The prompt is every turn before the reference (the last assistant turn), rendered with the training template;
GGUF files render it with their own embedded template through llama-cpp-python, as a user of the file would.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tunemake import degenerate
from tunemake.chat import Renderer, stop_token_ids, with_fallback
from tunemake.errors import StepError
from tunemake.jsonl import atomic_dir, read_jsonl, write_json, write_jsonl
from tunemake.params import EvalParams
from tunemake.params import load as load_params
from tunemake.runtime import peak_rss_mb
from tunemake.scoring import text_scores, tool_scores
from tunemake.stats import interval

log = logging.getLogger("tunemake")


def examples(test_file: Path, limit: int | None) -> list[dict]:
    """Prompt, reference text and reference calls of each test row; the reference is its last assistant turn."""
    records = read_jsonl(test_file)
    out = []
    for record in [records[i] for i in spread(len(records), limit or len(records))]:
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        reference = messages[last]
        out.append(
            {
                "id": record["id"],
                "prompt": messages[:last],
                "tools": record.get("tools") or [],
                "reference": with_fallback([reference], [])[0]["content"],
                "reference_calls": reference.get("tool_calls") or [],
            }
        )
    return out


def spread(count: int, wanted: int) -> list[int]:
    """Evenly spaced row indices: a subset with the same mix of sources and lengths as the whole."""
    n = min(wanted, count)
    return sorted({round(i * (count - 1) / max(n - 1, 1)) for i in range(n)})


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


def hf_model(model_dir: str, tokenized: str, rows: list[dict], params: dict) -> dict:
    """Loss, answers and speed of a transformers model (runs in its own process)."""
    import torch
    from transformers import AutoTokenizer

    from tunemake.runtime import threads
    from tunemake.weights import load

    params = EvalParams(**params)
    torch.set_num_threads(threads())
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load(model_dir, dtype="auto").eval().to(device)
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    renderer = Renderer(tokenizer)
    prompts = [renderer.render(*renderer.prepare(r["prompt"], r["tools"]), add_generation_prompt=True) for r in rows]
    generate = dict(max_new_tokens=params.max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=pad)
    with torch.inference_mode():
        loss = held_out_loss(model, Path(tokenized), {r["id"] for r in rows}, pad, params.batch_size)
        answers, stopped = greedy_answers(model, tokenizer, prompts, generate, params.batch_size)
        timed = [prompts[i] for i in spread(len(rows), params.speed_rows)]
        timings = [time_one(model, tokenizer, prompt, generate) for prompt in timed]  # one at a time, as served
    return {"answers": answers, "stopped": stopped, "loss": loss, "timings": timings, "peak_rss_mb": peak_rss_mb()}


def held_out_loss(model, tokenized: Path, ids: set[str], pad: int, batch_size: int) -> float:
    """Teacher-forced loss per assistant token over the evaluated test rows (the training loss, on held-out rows)."""
    import datasets
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from tunemake.loss import IGNORE, assistant_loss

    datasets.disable_caching()  # filter() must not write cache files into results/tokenized, another step's output
    test = datasets.load_from_disk(str(tokenized / "dataset"))["test"].filter(lambda r: r["id"] in ids)
    test = test.remove_columns("id")
    collate = DataCollatorForLanguageModeling(pad_token_id=pad)
    total, count = 0.0, 0
    for start in range(0, len(test), batch_size):
        chunk = collate(list(test.select(range(start, min(start + batch_size, len(test))))))
        batch = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in chunk.items()}
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        loss, _ = assistant_loss(model, batch, n)
        total, count = total + loss.item() * n, count + n
    return total / max(count, 1)


def greedy_answers(model, tokenizer, prompts: list[str], generate: dict, batch_size: int):
    """Each prompt's greedy answer, generated in batches of similar length (little padding), and whether the model
    ended its turn (generated one of its stop tokens) before the token limit."""
    answers, stopped = [""] * len(prompts), [True] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(model.device)
        output = model.generate(**encoded, **generate)
        for i, sequence in zip(chunk, output[:, encoded["input_ids"].shape[1] :]):
            answers[i] = tokenizer.decode(sequence, skip_special_tokens=True).strip()
            stopped[i] = any(token in generate["eos_token_id"] for token in sequence.tolist())
    return answers, stopped


def time_one(model, tokenizer, prompt: str, generate: dict) -> tuple:
    """(prompt tokens, generated tokens, time to first token, time after it) for one request."""
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    timer, started = FirstTokenTimer(), time.perf_counter()
    output = model.generate(**encoded, **generate, streamer=timer)
    ended = time.perf_counter()
    prompt_tokens = encoded["input_ids"].shape[1]
    return (prompt_tokens, output.shape[1] - prompt_tokens, timer.first - started, ended - timer.first)


def gguf_model(path: str, rows: list[dict], params: dict, tokenizer_dir: str) -> dict:
    """Answers and speed of a GGUF file through llama-cpp-python (runs in its own process)."""
    import llama_cpp
    from transformers import AutoTokenizer

    from tunemake.llamacpp import load

    params = EvalParams(**params)
    renderer = Renderer(AutoTokenizer.from_pretrained(tokenizer_dir))
    llm = load(Path(path), n_ctx=4096)
    answers, stopped, timings = [], [], []
    timed = set(spread(len(rows), params.speed_rows))
    for index, row in enumerate(rows):
        messages, tools = renderer.prepare(row["prompt"], row["tools"])
        llm.reset()  # no prompt cache carried between rows: each is timed from a cold prompt, like the HF rows
        llama_cpp.llama_perf_context_reset(llm.ctx)
        started = time.perf_counter()
        response = llm.create_chat_completion(
            messages=messages, tools=tools, temperature=0.0, max_tokens=params.max_new_tokens
        )
        elapsed = time.perf_counter() - started
        answers.append((response["choices"][0]["message"]["content"] or "").strip())
        stopped.append(response["choices"][0]["finish_reason"] != "length")
        # llama.cpp's own counters: the prompt's evaluation ends when the first token can be sampled; n_eval counts
        # the tokens decoded after that one.
        perf = llama_cpp.llama_perf_context(llm.ctx)
        if index in timed:
            timings.append((perf.n_p_eval, perf.n_eval + 1, perf.t_p_eval_ms / 1000, elapsed - perf.t_p_eval_ms / 1000))
    return {"answers": answers, "stopped": stopped, "loss": None, "timings": timings, "peak_rss_mb": peak_rss_mb()}


def in_fresh_process(function, *args) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def speed(timings: list[tuple], peak: float) -> dict:
    """Means over timed rows; each timing is (prompt tokens, generated tokens, time to first token, time after it)."""
    if not timings:
        return {"peak_rss_mb": peak}
    return {
        "time_to_first_token_s": round(statistics.mean(t[2] for t in timings), 3),
        "prompt_tokens_per_second": round(sum(t[0] for t in timings) / sum(t[2] for t in timings), 1),
        "generation_tokens_per_second": round(
            sum(max(t[1] - 1, 0) for t in timings) / max(sum(t[3] for t in timings), 1e-9), 1
        ),
        "seconds_per_answer": round(statistics.mean(t[2] + t[3] for t in timings), 3),
        "timed_rows": len(timings),
        "peak_rss_mb": peak,
    }


def summarise(rows: list[dict], answers: list[str], stopped: list[bool]) -> tuple[dict, list[dict]]:
    per_row, tool_rows = [], []
    for row, answer, ended in zip(rows, answers, stopped):
        scores = text_scores(answer, row["reference"])
        scores["degenerate"] = degenerate.reasons(answer, ended)
        if row["reference_calls"]:
            scores["tool_calls"] = tool_scores(answer, row["reference_calls"], row["tools"])
            tool_rows.append(scores["tool_calls"])
        per_row.append(scores)
    columns = {
        "exact_match": [s["exact_match"] for s in per_row],
        "rouge_l": [s["rouge_l"] for s in per_row],
        "degenerate_rate": [float(bool(s["degenerate"])) for s in per_row],
    }
    columns.update({f"tool_calls.{k}": [t[k] for t in tool_rows] for k in (tool_rows[0] if tool_rows else [])})
    points = {name: round(100 * statistics.mean(values), 1) for name, values in columns.items()}
    summary = {name: points[name] for name in ("exact_match", "rouge_l", "degenerate_rate")}
    if tool_rows:
        summary["tool_calls"] = {k: points[f"tool_calls.{k}"] for k in tool_rows[0]}
    summary["ci95"] = {name: interval(values) for name, values in columns.items()}  # bootstrap over rows, points
    return summary, per_row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("base", "base"),
        ("merged", "merge"),
        ("gguf", "gguf"),
        ("data", "prepare"),
        ("tokenized", "tokenize"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {what} step's output")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params).eval, args.base, args.merged, args.gguf, args.data, args.tokenized, args.out)


def run(params: EvalParams, base: Path, merged: Path, gguf: Path, data: Path, tokenized: Path, out: Path) -> dict:
    rows = examples(data / "test.jsonl", params.limit)
    if not rows:
        raise StepError(f"{data / 'test.jsonl'} has no rows to evaluate; give prepare.split.test a share of the data")
    models = {"base": (hf_model, str(base), str(tokenized)), "tuned": (hf_model, str(merged), str(tokenized))}
    sizes = json.loads((gguf / "sizes.json").read_text())
    for name in sizes["order"]:
        models[f"gguf-{name}"] = (gguf_model, str(gguf / sizes["files"][name]["file"]))
    metrics = {"test_rows": len(rows), "tool_call_rows": sum(bool(r["reference_calls"]) for r in rows), "models": {}}
    answers, row_scores = {}, {}
    for name, (function, *where) in models.items():
        started = time.perf_counter()
        if function is hf_model:
            result = in_fresh_process(function, *where, rows, params.model_dump())
        else:
            result = in_fresh_process(function, *where, rows, params.model_dump(), str(merged))
        summary, row_scores[name] = summarise(rows, result["answers"], result["stopped"])
        if result["loss"] is not None:
            summary = {"loss": round(result["loss"], 4), "perplexity": round(math.exp(result["loss"]), 3), **summary}
        summary["speed"] = speed(result["timings"], result["peak_rss_mb"])
        metrics["models"][name] = summary
        answers[name] = result["answers"]
        tool = summary.get("tool_calls", {}).get("exact_match")
        log.info(
            "evaluate: %s in %.0fs: exact match %s, ROUGE-L %s, tool-call exact match %s, %s gen tok/s",
            name,
            time.perf_counter() - started,
            summary["exact_match"],
            summary["rouge_l"],
            tool,
            summary["speed"].get("generation_tokens_per_second"),
        )
    with atomic_dir(out) as tmp:
        write_json(tmp / "metrics.json", metrics)
        write_jsonl(
            tmp / "samples.jsonl",
            (
                {
                    "id": row["id"],
                    "prompt": row["prompt"][-1]["content"],
                    "reference": row["reference"],
                    "answers": {name: answers[name][i] for name in models},
                    "scores": {name: row_scores[name][i] for name in models},
                }
                for i, row in enumerate(rows)
            ),
        )
    return metrics
