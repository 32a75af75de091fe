"""replay: the base model's own answers to the bundled replay prompts, as training rows (self-distillation).

prepare mixes them into the training split (`prepare.replay`: replay rows per task row; 0 turns replay off). Trained
on its own answers to everyday prompts beside the task rows, the model learns the task without drifting from the
base on everything else. The prompts (tunemake/prompts/replay.jsonl) never overlap the regression suite's
(tests/test_general.py), or the suite would measure recall instead of generalisation. Each prompt is asked under
one system turn in turn (SYSTEMS: none, so the template's default; empty; a plain one; two personas), covering the
contexts the task rows lack. Answers that did not end their turn within `replay.max_new_tokens`, or are
degenerate, are left out: replay must never teach truncation or loops. `replay.temperature` above 0 samples the
answers (seeded) instead of taking the greedy ones. With `prepare.replay: 0` the step writes no rows at once and loads
no model (torch is imported inside `run`).

The base answers in transformers, its weights in bfloat16 where the device multiplies it fast
(tunemake.models.precision.fast_weights_dtype): they are training rows, compared with nothing, and transformers answers
them faster than llama.cpp's portable build on CPUs that multiply bfloat16 fast (docs/benchmarks/replay.md). The answers
that are compared with the tuned model's (the suite, baseline) stay with llama.cpp, the engine every GGUF answers in.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tunemake.data.jsonl import atomic_dir, write_json, write_jsonl
from tunemake.evaluation import degenerate, general
from tunemake.models import inference
from tunemake.models.precision import fast_weights_dtype
from tunemake.params import load as load_params
from tunemake.params.prepare import PrepareParams
from tunemake.params.replay import ReplayParams

log = logging.getLogger(__name__)

# No system turn (the template's default), an empty one, a plain one and two personas: the contexts a user's
# deployment puts the model in and the task rows lack. None is the suite's (tunemake.evaluation.general.SYSTEMS).
SYSTEMS = [
    None,
    "",
    "You are a helpful assistant.",
    "You are Max, a cheerful guide at a science museum.",
    "You work at the help desk of a travel agency. Answer customers politely.",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output")
    parser.add_argument("--out", type=Path, required=True, help="rows.jsonl (canonical records) and stats.json")


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params, args.set, prepare=PrepareParams, replay=ReplayParams)
    if params.prepare.replay:
        run(params.replay, args.base, args.out)
    else:
        off(args.out)


def off(out: Path) -> dict:
    """prepare.replay: 0. Nothing to answer; `enabled: false` lets prepare refuse this output if replay is switched on
    later without re-running the step."""
    stats = {"enabled": False, "prompts": 0, "rows": 0}
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "rows.jsonl", [])
        write_json(tmp / "stats.json", stats)
    log.info("replay: off (prepare.replay: 0); no model loaded")
    return stats


def run(params: ReplayParams, base: Path, out: Path) -> dict:
    import torch

    started = time.perf_counter()
    prompts = general.load(general.PROMPTS / "replay.jsonl")
    prompts = [prompts[i] for i in general.spread(len(prompts), params.limit)]
    conversations = []
    for index, prompt in enumerate(prompts):
        system = SYSTEMS[index % len(SYSTEMS)]
        messages = [{"role": "user", "content": prompt.prompt}]
        conversations.append(
            {"messages": messages if system is None else [{"role": "system", "content": system}] + messages}
        )
    model, tokenizer, generate = inference.load_model(base, params.max_new_tokens, dtype=fast_weights_dtype())
    prompts = inference.render(tokenizer, conversations)
    if params.temperature > 0:  # temperature, then top-p (greedy: docs/benchmarks/defaults.md)
        generate.update(inference.sampling(params.temperature, params.top_p))
    with torch.inference_mode():
        answers, stopped = inference.hf_answers(model, tokenizer, prompts, generate, params.batch_size, params.seed)
    rows, dropped = [], {"unfinished": 0, "degenerate": 0}
    for index, (conversation, answer, ended) in enumerate(zip(conversations, answers, stopped)):
        if not ended:
            dropped["unfinished"] += 1
        elif degenerate.reasons(answer):
            dropped["degenerate"] += 1
        else:
            messages = conversation["messages"] + [{"role": "assistant", "content": answer}]
            rows.append(
                {"id": f"replay:{index + 1}", "messages": messages, "meta": {"source": "replay", "line": index + 1}}
            )
    stats = {
        "enabled": True,
        "prompts": len(prompts),
        "rows": len(rows),
        "dropped": dropped,
        "max_new_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "rows.jsonl", rows)
        write_json(tmp / "stats.json", stats)
    log.info(
        "replay: %d of %d base answers kept in %.0fs (dropped %s)",
        len(rows),
        len(prompts),
        time.perf_counter() - started,
        dropped,
    )
    return stats
