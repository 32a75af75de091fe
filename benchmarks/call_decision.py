"""How firmly a model decides between a tool call and words: for each row with tools offered, the probability its
first answer token opens a call (`<tool_call>` starts with "<") rather than the row's own first answer token. Prints
JSON per split and kind (rows that call, rows that answer in words): how many the model gets right, and the mean and
quartiles of the call probability. A model that has learned the choice is near 1 on call rows and near 0 on the
others, on its own training rows first of all.

    python benchmarks/call_decision.py --model results/merged --data results/data --splits train test
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tunemake.data.chat import answer_kind, format_call
from tunemake.models.inference import load_model
from tunemake.params.sources import SourceParams


def first_token(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False).input_ids[0]


def call_probabilities(model, tokenizer, rows: list[dict], reply: str) -> list[tuple[str, float]]:
    """(kind, p(call) / (p(call) + p(words))) per row; words is the row's own reply, or `reply` on call rows."""
    import torch

    call = first_token(tokenizer, format_call({"function": {"name": "f", "arguments": {}}}))
    results = []
    for row in rows:
        kind = answer_kind(row)
        words = first_token(tokenizer, reply if kind == "tool_call" else row["messages"][-1]["content"])
        prompt = tokenizer.apply_chat_template(
            row["messages"][:-1], tools=row["tools"], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
        with torch.no_grad():
            logp = model(ids).logits[0, -1].float().log_softmax(-1)
        results.append((kind, float(torch.sigmoid(logp[call] - logp[words]))))
    return results


def summary(results: list[tuple[str, float]]) -> dict:
    out = {}
    for kind in ("tool_call", "no_call"):
        probs = [p for k, p in results if k == kind]
        if probs:
            right = sum((p > 0.5) == (kind == "tool_call") for p in probs)
            quartiles = statistics.quantiles(probs, n=4) if len(probs) > 1 else probs * 3
            out[kind] = {
                "rows": len(probs),
                "right": right,
                "mean_p_call": round(statistics.fmean(probs), 3),
                "p_call_quartiles": [round(q, 3) for q in quartiles],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a merged model folder")
    parser.add_argument("--data", type=Path, required=True, help="prepare's output folder")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--reply", default=SourceParams.model_fields["no_call_reply"].default, help="the no-call reply")
    args = parser.parse_args()
    model, tokenizer, _ = load_model(args.model, max_new_tokens=1)
    report = {"model": str(args.model)}
    for split in args.splits:
        lines = (args.data / f"{split}.jsonl").read_text().splitlines()
        rows = [r for r in map(json.loads, lines) if r.get("tools")]
        report[split] = summary(call_probabilities(model, tokenizer, rows, args.reply))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
