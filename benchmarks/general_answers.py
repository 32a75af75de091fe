"""Answering the regression suite: transformers generate() in batches vs llama.cpp one prompt at a time vs
llama.cpp's batched decoding (tunemake.llama.llamacpp.answer), on the same rendered prompts, side by side in one run,
and how many batched answers equal the ones decoded one at a time.

The model is the bundled SmolLM2-135M-Instruct: its GGUF for llama.cpp (or `--gguf`), the dequantised float32
weights pinned by results/base for transformers. Also times the teacher-forced drift pass (inference.answer_losses)
over the same prompts. Tokens/s counts generated tokens. Prints JSON.

    python benchmarks/general_answers.py --prompts 32 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tunemake.llama.llamacpp import answer, load
from tunemake.models import inference
from tunemake.models.weights import resolve
from tunemake.params.base import BaseParams
from tunemake.params.suite import SuiteParams
from tunemake.runtime import threads
from tunemake.steps.suite import conversations


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("results/base"))
    parser.add_argument("--gguf", type=Path, default=None, help="default: the bundled SmolLM2 GGUF")
    parser.add_argument("--prompts", type=int, default=32, help="conversations (3 system turns per prompt)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    rows = conversations(SuiteParams())[: args.prompts]
    model, tokenizer, generate = inference.load_model(args.base, args.max_new_tokens)
    prompts = inference.render(tokenizer, rows)
    llm = load(args.gguf or Path(resolve(BaseParams())["path"]))
    count = lambda answers: sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)  # noqa: E731

    results = {}
    with torch.inference_mode():
        (answers, _), seconds = timed(inference.hf_answers, model, tokenizer, prompts, generate, args.batch_size)
        results["transformers generate, batched"] = (count(answers), seconds)
        base_answers = answers
        _, seconds = timed(inference.answer_losses, model, tokenizer, prompts, base_answers, args.batch_size)
        results["drift pass (teacher forced)"] = (None, seconds)
    (alone, _), seconds = timed(answer, llm, prompts, args.max_new_tokens, 1)
    results["llama.cpp, one at a time"] = (count(alone), seconds)
    (answers, _), seconds = timed(answer, llm, prompts, args.max_new_tokens, args.batch_size)
    results["llama.cpp, batched"] = (count(answers), seconds)
    # other batch shapes round differently: how many batched answers are the ones decoded alone
    equal = sum(a == b for a, b in zip(answers, alone))
    print(
        json.dumps(
            {
                "conversations": len(prompts),
                "max_new_tokens": args.max_new_tokens,
                "threads": threads(),
                "llama_cpp_batched_equal_to_one_at_a_time": equal,
                "results": {
                    name: {"seconds": round(s, 1), **({"tokens": n, "tokens_per_second": round(n / s, 1)} if n else {})}
                    for name, (n, s) in results.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
