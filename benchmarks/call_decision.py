"""How firmly a model decides between a tool call and words: for each row with tools offered, the probability its
first answer token opens a call (`<tool_call>` starts with "<") rather than the row's own first answer token. Prints
JSON per split and kind (rows that call, rows that answer in words): how many the model gets right, and the mean and
quartiles of the call probability. A model that has learned the choice is near 1 on call rows and near 0 on the
others, on its own training rows first of all.

It also asks whether the choice is in the model's state at that position at all: the final hidden state's norm, split
into the part every row shares and the part that differs per row, and a linear probe (standardised logistic
regression) fitted on the first split's states and scored on each split. A probe that separates the rows where the
model does not says the information is there and training has not yet read it out.

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


def call_probabilities(model, tokenizer, rows: list[dict], reply: str):
    """(kind, p(call) / (p(call) + p(words))) per row, and the final hidden states at the position that chooses;
    words is the row's own reply, or `reply` on call rows."""
    import torch

    call = first_token(tokenizer, format_call({"function": {"name": "f", "arguments": {}}}))
    results, states = [], []
    for row in rows:
        kind = answer_kind(row)
        words = first_token(tokenizer, reply if kind == "tool_call" else row["messages"][-1]["content"])
        prompt = tokenizer.apply_chat_template(
            row["messages"][:-1], tools=row["tools"], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
        with torch.no_grad():
            out = model(ids, output_hidden_states=True)
        logp = out.logits[0, -1].float().log_softmax(-1)
        results.append((kind, float(torch.sigmoid(logp[call] - logp[words]))))
        states.append(out.hidden_states[-1][0, -1].float().cpu())
    return results, torch.stack(states)


def state_norms(states) -> dict:
    """How much of the state that chooses is shared by every row, and how much differs per row."""
    shared = states.mean(0)
    return {
        "norm": round(float(states.norm(dim=1).mean()), 2),
        "shared_norm": round(float(shared.norm()), 2),
        "per_row_norm": round(float((states - shared).norm(dim=1).mean()), 2),
    }


def fit_probe(states, calls):
    """Logistic regression on the states rescaled to unit variance per dimension (L-BFGS, a small L2 penalty), so a
    small per-row part counts as much as the large shared one. A dozen lines of torch rather than scikit-learn, which
    the environment does not otherwise need."""
    import torch

    mean, scale = states.mean(0), states.std(0) + 1e-6
    x = (states - mean) / scale
    weights = torch.zeros(x.shape[1] + 1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=500)

    def loss():
        optimizer.zero_grad()
        logits = x @ weights[:-1] + weights[-1]
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, calls) + 1e-3 * weights[:-1].square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return lambda s: (((s - mean) / scale) @ weights[:-1] + weights[-1] > 0).tolist()


def probe_right(predict, results: list[tuple[str, float]], states) -> dict:
    said_call = predict(states)
    return {
        kind: sum(called == (k == "tool_call") for (k, _), called in zip(results, said_call) if k == kind)
        for kind in ("tool_call", "no_call")
    }


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
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a merged model folder")
    parser.add_argument("--data", type=Path, required=True, help="prepare's output folder")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--reply", default=SourceParams.model_fields["no_call_reply"].default, help="the no-call reply")
    args = parser.parse_args()
    model, tokenizer, _ = load_model(args.model, max_new_tokens=1)
    report, measured = {"model": str(args.model), "probe_fitted_on": args.splits[0]}, {}
    for split in args.splits:
        lines = (args.data / f"{split}.jsonl").read_text().splitlines()
        rows = [r for r in map(json.loads, lines) if r.get("tools")]
        measured[split] = call_probabilities(model, tokenizer, rows, args.reply)
    results, states = measured[args.splits[0]]
    predict = fit_probe(states, torch.tensor([float(kind == "tool_call") for kind, _ in results]))
    for split, (results, states) in measured.items():
        report[split] = summary(results) | {
            "state": state_norms(states),
            "probe_right": probe_right(predict, results, states),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
