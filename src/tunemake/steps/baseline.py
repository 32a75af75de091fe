"""baseline: the base model scored on the held-out test split, once per base and test data, for every evaluate.

The base's row of the evaluation depends only on the base, the test rows and pairs, the suite and the eval settings,
so it is a step of its own: retraining, re-aligning, re-exporting, or each point of a sweep over training settings
never scores the base again. The passes are evaluate's own (tunemake.evaluation.heldout.score_transformers and
score_gguf, each in a fresh process): teacher-forced loss, the held-out preference pairs, the loss on its own general
answers (the reference drift is measured against) and the timed rows in transformers; every test row answered by its
16-bit GGUF (tunemake.llama.llamacpp.base_gguf), whose answers are the base's: served by llama-server like every GGUF
(eval.served).

Output: base.json, the result evaluate reads as the base row (answers from the GGUF, `answers_from` says which),
with the eval settings it was scored with; evaluate refuses one scored with other settings.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.evaluation.heldout import (
    in_fresh_process,
    read_test_pairs,
    read_test_rows,
    score_gguf,
    score_transformers,
    suite_request,
)
from tunemake.params import load as load_params
from tunemake.params.eval import EvalParams

log = logging.getLogger("tunemake")

# The eval settings the base's scores depend on; evaluate checks its own against them.
SETTINGS = ("max_new_tokens", "speed_rows", "limit", "served")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("base", "base"),
        ("data", "prepare"),
        ("pairs", "pairs"),
        ("tokenized", "tokenize"),
        ("suite", "suite"),
        ("converter", "converter"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {what} step's output")
    parser.add_argument("--out", type=Path, required=True, help="base.json")


def main(args: argparse.Namespace) -> None:
    run(
        load_params(args.params, args.set, eval=EvalParams).eval,
        args.base,
        args.data,
        args.pairs,
        args.tokenized,
        args.suite,
        args.converter,
        args.out,
    )


def run(
    params: EvalParams,
    base: Path,
    data: Path,
    pairs_dir: Path,
    tokenized: Path,
    suite_dir: Path,
    converter: Path,
    out: Path,
) -> dict:
    from tunemake.llama.llamacpp import base_gguf

    rows, pairs = read_test_rows(data, params), read_test_pairs(pairs_dir, params)
    started = time.perf_counter()
    result = in_fresh_process(
        score_transformers, str(base), str(tokenized), False, pairs, rows, params.model_dump(), suite_request(suite_dir)
    )
    gguf = in_fresh_process(score_gguf, str(base_gguf(base, converter)), str(base), rows, params.model_dump(), None)
    served = {key: gguf[key] for key in ("calls", "answered_with_tool_calls") if key in gguf}
    result.update(answers=gguf["answers"], stopped=gguf["stopped"], answers_from="gguf-base", **served)
    with atomic_dir(out) as tmp:
        write_json(tmp / "base.json", {"settings": params.model_dump(include=set(SETTINGS)), **result})
    log.info(
        "baseline: the base on %d test rows and %d pairs in %.0fs", len(rows), len(pairs), time.perf_counter() - started
    )
    return result
