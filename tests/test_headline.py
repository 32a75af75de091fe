"""The headline numbers `dvc exp show` lists (tunemake.evaluation.headline): few, named for what they are, from each
step's full result."""

from __future__ import annotations

from tunemake.evaluation import headline

GENERAL = {"degenerate_rate": 10.0, "checkable": 80.0, "unfinished_rate": 0.0}


def gate_result(drift_value=0.0312, metric="tool_calls.exact_match") -> dict:
    return {
        "verdict": "iterate",
        "shipped": "Q5_0",
        "metric": metric,
        "checks": [
            {"check": f"tuned {metric}", "value": 87.5},
            {
                "check": "drift: tuned loss on the base's general answers minus the base's (nats/token)",
                "value": drift_value,
            },
        ],
    }


def eval_metrics(checkable_base=75.0) -> dict:
    def model(score, low, general=None):
        return {
            "tool_calls": {"exact_match": score},
            "exact_match": score - 10,
            "ci95": {"tool_calls.exact_match": [low, score + 5], "exact_match": [low - 10, score]},
            **({"general": general} if general else {}),
        }

    return {
        "models": {
            "base": model(12.5, 3.1, {**GENERAL, "degenerate_rate": 5.0, "checkable": checkable_base}),
            "tuned": model(87.5, 75.0),
            "gguf-F16": model(87.5, 75.0),
            "gguf-Q5_0": model(84.375, 71.9, GENERAL),
        },
        "engine_check": {"base": {"rows": 2}},  # detail the headline leaves out
    }


def test_the_gate_headline_names_the_verdict_the_scores_with_their_lower_bounds_and_the_regressions():
    row = headline.gate(gate_result(), eval_metrics())
    assert row == {
        "verdict": "iterate",
        "shipped_quant": "Q5_0",
        "tool_calls_em_tuned": 87.5,
        "tool_calls_em_tuned_low": 75.0,
        "tool_calls_em_shipped": 84.38,
        "tool_calls_em_shipped_low": 71.9,
        "degenerate_vs_base": 5.0,  # shipped minus base: 5 points more degenerate answers
        "checkable_vs_base": 5.0,  # and 5 points more checkable ones right
        "drift": 0.0312,
    }
    # BFCL restraint of the shipped file, when the bfcl step ran
    scored = {"categories": {"irrelevance": {"models": {"shipped": {"accuracy": 93.3}}}}}
    assert headline.gate(gate_result(), eval_metrics(), scored)["bfcl_irrelevance_shipped"] == 93.3
    # Numbers a run lacks are left out (DVC shows "-"), never written as null
    bare = headline.gate(gate_result(drift_value=None), eval_metrics(checkable_base=None))
    assert "drift" not in bare and "checkable_vs_base" not in bare and None not in bare.values()
    # Another gate.metric names its own columns
    other = headline.gate(gate_result(metric="exact_match"), eval_metrics())
    assert other["answer_em_shipped"] == 74.38 and other["answer_em_shipped_low"] == 61.9


def test_the_train_and_align_headlines_are_a_few_numbers_from_their_summaries():
    summary = {"parameters": {"trainable": 1_843_200, "total": 136_358_592}, "wall_seconds": 95.4, "best": None}
    assert headline.train(summary) == {"trainable_params": 1_843_200, "train_minutes": 1.59}  # no val loss: left out
    summary["best"] = {"step": 10, "val_loss": 0.512345}
    assert headline.train(summary)["best_val_loss"] == 0.5123
    assert headline.align({"enabled": False}) == {}
    dpo = {"enabled": True, "val_end": {"rewards/margins": 0.81234, "rewards/accuracies": 0.75, "loss": 0.4}}
    assert headline.align(dpo) == {"dpo_val_margin": 0.8123, "dpo_val_accuracy": 0.75}
