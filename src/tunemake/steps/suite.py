"""suite: the regression suite's prompts and the base model's own greedy answers to them, made once per base.

The suite is the bundled general prompts (tunemake/prompts/general.jsonl) plus your own file (`suite.prompts`),
each asked under each system variant in `suite.systems` (see tunemake.evaluation.general). The base model's answers
depend only on the base, the prompts and these settings, so every experiment reuses them: evaluate has the tuned model
and each GGUF answer the same rendered prompts, and measures the base's and the tuned model's loss on the base's answers
(drift, both in evaluate so they are computed alike). The base answers through llama.cpp from its 16-bit GGUF
(tunemake.llama.llamacpp.base_gguf), the engine the GGUFs it is compared with answer through.

Output: suite.jsonl, one row per conversation: id, kind, system variant, the prompt as rendered by the base's
template, accepted answers (checkable prompts), and the base's answer and whether it ended its turn (evaluate scores
the answers, beside every other model's); manifest.json, the settings evaluate reuses.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tunemake.data.jsonl import atomic_dir, write_json, write_jsonl
from tunemake.evaluation import degenerate, general
from tunemake.models import inference
from tunemake.params import load as load_params
from tunemake.params.suite import SuiteParams

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output")
    parser.add_argument("--converter", type=Path, required=True, help="the converter step's output")
    parser.add_argument("--out", type=Path, required=True, help="suite.jsonl and manifest.json")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, suite=SuiteParams).suite, args.base, args.converter, args.out)


def conversations(params: SuiteParams) -> list[dict]:
    files = [general.PROMPTS / "general.jsonl"] if params.bundled else []
    files += [Path(params.prompts)] if params.prompts else []
    rows = []
    for path in files:
        label = "bundled" if path.parent == general.PROMPTS else path.name
        prompts = general.load(path)
        picked = general.spread(len(prompts), params.limit)
        for row in general.conversations([prompts[i] for i in picked], params.systems, picked, params.every_system):
            rows.append({**row, "id": f"{label}:{row['id']}", "set": label})
    return rows


def run(params: SuiteParams, base: Path, converter: Path, out: Path) -> dict:
    from transformers import AutoTokenizer

    from tunemake.llama import llamacpp

    started = time.perf_counter()
    rows = conversations(params)
    prompts = inference.render(AutoTokenizer.from_pretrained(base), rows)
    llm = llamacpp.load(llamacpp.base_gguf(base, converter), n_ctx=4096)
    answers, stopped = llamacpp.answer(llm, prompts, params.max_new_tokens, parallel=params.batch_size)
    with atomic_dir(out) as tmp:
        write_jsonl(
            tmp / "suite.jsonl",
            (
                {
                    **row,
                    "rendered": prompt,
                    "base": {"answer": answer, "stopped": ended},
                }
                for row, prompt, answer, ended in zip(rows, prompts, answers, stopped)
            ),
        )
        write_json(tmp / "manifest.json", {**params.model_dump(), "conversations": len(rows)})
    broken = sum(bool(degenerate.reasons(a)) for a in answers)
    log.info(
        "suite: the base answered %d conversations in %.0fs; %d degenerate, %d unfinished at %d tokens",
        len(rows),
        time.perf_counter() - started,
        broken,
        stopped.count(False),
        params.max_new_tokens,
    )
    return {"conversations": len(rows)}
