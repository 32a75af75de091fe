"""Score and trainable parameters against one swept parameter, from the experiments `dvc exp show` lists (the DVC
queue's sweep; `snakemake --config sweep=...` draws the same plot into the report, see tunemake.commands.sweep).

    dvc exp run --queue -S 'train.lora.r=4,8,16,32,64' && dvc queue start   # then, when `dvc queue status` is done:
    python scripts/plot_sweep.py --param train.lora.r --out results/sweep.png  # --all-commits: queued from older commits

Prints one JSON row per experiment, under the headline names `dvc exp show` lists (tunemake.evaluation.headline: the
value, the tuned score and the lower end of its 95% interval, trainable_params, best_val_loss, train_minutes, verdict),
and draws the score and the trainable parameters into --out. Experiments missing the parameter or the metrics (failed or
still queued) are listed, not dropped silently.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tunemake.commands.sweep import plot
from tunemake.evaluation.headline import FILE, score_name


def dig(tree: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def experiments(shown: list[dict]) -> list[dict]:
    """Each experiment of `dvc exp show --json` (the workspace and baselines too) as {name, params, metrics}."""
    found = []
    for baseline in shown:
        for entry in [baseline, *(baseline.get("experiments") or [])]:
            for run in entry.get("revs") or [entry]:
                data = run.get("data") or {}
                metrics = {path: (value or {}).get("data", {}) for path, value in (data.get("metrics") or {}).items()}
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                rev = data.get("rev", "")
                name = run.get("name") or (rev[:7] if len(rev) == 40 else rev)
                found.append({"name": name, "params": params, "metrics": metrics})
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--param", default="train.lora.r", help="the swept parameter (default: train.lora.r)")
    parser.add_argument(
        "--score",
        default="tool_calls.exact_match",
        help="gate.metric of the experiments (default: tool_calls.exact_match, headline column tool_calls_em_tuned)",
    )
    parser.add_argument("--out", default="results/sweep.png")
    parser.add_argument(
        "--all-commits",
        action="store_true",
        help="also experiments queued from earlier commits (dvc exp show shows those of HEAD only)",
    )
    args = parser.parse_args()

    command = ["dvc", "exp", "show", "--json"] + (["--all-commits"] if args.all_commits else [])
    shown = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    stem = score_name(args.score)
    wanted = [f"{stem}_tuned", f"{stem}_tuned_low", "trainable_params", "best_val_loss", "train_minutes", "verdict"]
    rows, skipped, bare = [], [], 0
    for exp in experiments(shown):
        if not exp["metrics"]:  # a commit from before the pipeline had metrics
            bare += 1
            continue
        value = dig(exp["params"], args.param)
        # the pipeline's headline files (tunemake.evaluation.headline); dvclive's own metrics, when on, are not read
        headline = {k: v for path, data in exp["metrics"].items() if path.endswith(FILE) for k, v in data.items()}
        if value is None or headline.get(f"{stem}_tuned") is None or "trainable_params" not in headline:
            skipped.append(f"{exp['name']} (no {args.param}, {stem}_tuned or trainable_params)")
            continue
        if any(row[args.param] == value for row in rows):  # `dvc exp show` lists the newest first
            skipped.append(f"{exp['name']} (an older run of {args.param}={value})")
            continue
        rows.append({"experiment": exp["name"], args.param: value, **{name: headline.get(name) for name in wanted}})
    if not rows:
        print(f"no finished experiment has {args.param} and {stem}_tuned; skipped: {skipped}", file=sys.stderr)
        return 1
    rows.sort(key=lambda r: r[args.param])
    for row in rows:
        print(json.dumps(row))
    if skipped or bare:
        print(f"skipped: {'; '.join(skipped + [f'{bare} commits without metrics'] * bool(bare))}", file=sys.stderr)

    plot(rows, args.param, stem, Path(args.out))
    print(f"plot: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
