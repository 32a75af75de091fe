"""headline: the few numbers that decide between two runs, under names that say what they are.

Train, align and gate each write a small `headline.json` beside their full output; those are dvc.yaml's only metrics,
so `dvc exp show` has one short column per number instead of every leaf of every result file. The Snakemake sweep's
sweep.json, scripts/plot_sweep.py and the report use the same names. The full detail stays where it was:
results/train/summary.json, results/align/summary.json, results/eval/metrics.json, results/gate.json.

    train: trainable_params, best_val_loss, train_minutes
    align: dpo_val_margin, dpo_val_accuracy (only when align ran)
    reinforce: grpo_reward_first, grpo_reward_last, grpo_kl_last (only when reinforce ran)
    gate:  verdict, shipped_quant, <score>_tuned, <score>_tuned_low, <score>_shipped, <score>_shipped_low,
           degenerate_vs_base, checkable_vs_base, drift, bfcl_irrelevance_shipped (BFCL restraint, when bfcl ran)

<score> is gate.metric's short name (SCORES): tool_calls_em for tool_calls.exact_match. `_low` is the lower end of
the score's 95% interval. degenerate_vs_base and checkable_vs_base are the shipped model's rate minus the base's, in
points, on the general prompts (more degenerate answers is worse, more checkable answers better); drift is the tuned
model's loss on the base's own general answers minus the base's (nats/token), absent where the gate finds it not
applicable. A number that does not exist for a run (no val split, no checkable prompts) is left out, not written as
null: DVC shows it as "-".
"""

from __future__ import annotations

from tunemake.data.jsonl import dotted

# gate.metric -> the column stem. "em" is exact match: the whole answer (or every tool call) right.
SCORES = {"tool_calls.exact_match": "tool_calls_em", "exact_match": "answer_em", "rouge_l": "answer_rouge_l"}
FILE = "headline.json"


def score_name(metric: str) -> str:
    return SCORES.get(metric, metric.replace(".", "_"))


def _present(values: dict) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def _round(value, digits: int):
    return None if value is None else round(value, digits)


def train(summary: dict) -> dict:
    """From results/train/summary.json."""
    best = summary.get("best") or {}
    return _present(
        {
            "trainable_params": summary["parameters"]["trainable"],
            "best_val_loss": _round(best.get("val_loss"), 4),
            "train_minutes": round(summary["wall_seconds"] / 60, 2),
        }
    )


def align(summary: dict) -> dict:
    """From results/align/summary.json: DPO's reward margin (chosen minus rejected) and how often the chosen answer
    wins, on the held-out pairs at the end. Nothing when align is off."""
    if not summary.get("enabled"):
        return {}
    end = summary.get("val_end") or {}
    return _present(
        {
            "dpo_val_margin": _round(end.get("rewards/margins"), 4),
            "dpo_val_accuracy": _round(end.get("rewards/accuracies"), 4),
        }
    )


def reinforce(summary: dict) -> dict:
    """From results/reinforce/summary.json: GRPO's mean total reward on its first and last step, and the KL to the
    model it started from at the end. Nothing when reinforce is off."""
    if not summary.get("enabled"):
        return {}
    first, last = summary.get("first") or {}, summary.get("last") or {}
    return _present(
        {
            "grpo_reward_first": _round(first.get("reward"), 4),
            "grpo_reward_last": _round(last.get("reward"), 4),
            "grpo_kl_last": _round(last.get("kl"), 4),
        }
    )


def gate(result: dict, metrics: dict, bfcl: dict | None = None) -> dict:
    """From the gate's verdict (results/gate.json), the evaluation it judged (results/eval/metrics.json) and BFCL's
    summary (results/bfcl/summary.json), when it ran."""
    metric, stem = result["metric"], score_name(result["metric"])
    models = metrics["models"]
    shipped = f"gguf-{result['shipped']}"

    def score(model: str) -> tuple:
        value = dotted(models[model], metric)
        low = (models[model].get("ci95", {}).get(metric) or [None])[0]
        return _round(value, 2), _round(low, 2)

    def change(name: str):
        general = {model: (models[model].get("general") or {}).get(name) for model in (shipped, "base")}
        return None if None in general.values() else round(general[shipped] - general["base"], 2)

    tuned, tuned_low = score("tuned")
    shipped_score, shipped_low = score(shipped)
    drift = next((c["value"] for c in result["checks"] if c["check"].startswith("drift")), None)
    return _present(
        {
            "verdict": result["verdict"],
            "shipped_quant": result["shipped"],
            f"{stem}_tuned": tuned,
            f"{stem}_tuned_low": tuned_low,
            f"{stem}_shipped": shipped_score,
            f"{stem}_shipped_low": shipped_low,
            "degenerate_vs_base": change("degenerate_rate"),
            "checkable_vs_base": change("checkable"),
            "drift": _round(drift, 4),
            # restraint on an outside yardstick: no call where no offered function fits
            "bfcl_irrelevance_shipped": ((bfcl or {}).get("categories", {}).get("irrelevance") or {})
            .get("models", {})
            .get("shipped", {})
            .get("accuracy"),
        }
    )
