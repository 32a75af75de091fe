"""Where our checker (tunemake.evaluation.scoring, the one evaluate uses on our rows) and BFCL's AST checker
disagree on the same answers: a finished bfcl step's answers to BFCL's call categories, scored by both. Ours gets a
single reference per row, BFCL's first possible value of each argument (an argument whose possible values include ""
is optional and left out), so it is stricter wherever BFCL lists several right values. Prints JSON: per category and model,
the rows each checker counts right, and the rows where they differ with BFCL's verdict and our reference.

    python benchmarks/bfcl_checkers.py --bfcl results/bfcl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunemake.evaluation.scoring import tool_scores
from tunemake.steps import bfcl


def reference(ground_truth: list[dict]) -> list[dict]:
    """BFCL's possible answers as one reference call list, in OpenAI's tool-call shape."""
    calls = []
    for call in ground_truth:
        ((name, arguments),) = call.items()
        kept = {key: values[0] for key, values in arguments.items() if "" not in values}
        calls.append({"function": {"name": name.replace(".", "_"), "arguments": kept}})
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bfcl", type=Path, default=Path("results/bfcl"), help="a finished bfcl step's output")
    args = parser.parse_args()
    answers = [json.loads(line) for line in (args.bfcl / "answers.jsonl").read_text().splitlines()]
    _, tools, _ = bfcl._bfcl()
    out = {}
    for category in sorted({a["category"] for a in answers} - {"irrelevance"}):
        entries = {entry["id"]: (entry, truth) for entry, truth in bfcl.entries(category, None)}
        for model in ("tuned", "shipped"):
            counts = {"rows": 0, "bfcl_right": 0, "ours_right": 0, "differ": []}
            for answer in (a for a in answers if a["category"] == category):
                entry, truth = entries[answer["id"]]
                calls = answer[model]["calls"] or []
                text = "".join(
                    f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>"
                    for c in calls
                    for n, a in c.items()
                )
                ours = tool_scores(text, reference(truth), tools(entry["function"]))["exact_match"] == 1.0
                theirs = answer[model]["valid"]
                counts["rows"] += 1
                counts["bfcl_right"] += theirs
                counts["ours_right"] += ours
                if ours != theirs:
                    counts["differ"].append({"id": answer["id"], "bfcl": theirs, "calls": calls, "reference": truth})
            out[f"{category}/{model}"] = counts
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
