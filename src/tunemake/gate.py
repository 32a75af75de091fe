"""gate: decide deploy, iterate or abort from the held-out metrics and the thresholds in params.yaml `gate`.

The verdict, each check with its value and limit, and the reasons go to results/gate.json, which the report shows
and `dvc exp show` lists. With gate.enforce on, a verdict other than deploy fails the step (and so the pipeline).

deploy: every check passes. abort: the tuned model does not beat the base model at all. iterate: anything else
(try more epochs, another learning rate, more data). The quant check compares the shipped quant with our own F16
GGUF of the same model, never with another model: perplexity and scores only compare within one model.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tunemake.errors import StepError
from tunemake.jsonl import dotted, write_json
from tunemake.params import GateParams
from tunemake.params import load as load_params

log = logging.getLogger("tunemake")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval", type=Path, required=True, help="the evaluate step's output")
    parser.add_argument("--gguf", type=Path, required=True, help="the gguf step's output (which quant is shipped)")
    parser.add_argument("--out", type=Path, required=True, help="the verdict, as JSON")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params).gate, args.eval, args.gguf, args.out)


def score(metrics: dict, model: str, metric: str) -> float:
    value = dotted(metrics["models"].get(model, {}), metric)
    if value is None:
        raise StepError(
            f"gate.metric {metric!r} has no value for {model!r} in the evaluation (no tool-call rows in the "
            "test split?); set gate.metric in params.yaml to exact_match or rouge_l"
        )
    return value


def verdict(metrics: dict, sizes: dict, params: GateParams) -> dict:
    shipped, unquantized = f"gguf-{sizes['shipped']}", f"gguf-{sizes['unquantized']}"
    tuned, base = score(metrics, "tuned", params.metric), score(metrics, "base", params.metric)
    checks = [
        {
            "check": f"tuned {params.metric}",
            "value": tuned,
            "limit": f">= {params.min_score:g}",
            "passed": tuned >= params.min_score,
        },
        {
            "check": "gain over base",
            "value": round(tuned - base, 1),
            "limit": f">= {params.min_gain:g}",
            "passed": tuned - base >= params.min_gain,
        },
    ]
    if shipped != unquantized:
        drop = round(score(metrics, unquantized, params.metric) - score(metrics, shipped, params.metric), 1)
        checks.append(
            {
                "check": f"{sizes['shipped']} drop vs {unquantized[5:]}",
                "value": drop,
                "limit": f"<= {params.max_quant_drop:g}",
                "passed": drop <= params.max_quant_drop,
            }
        )
    speed = metrics["models"][shipped]["speed"]
    if params.max_latency_s is not None:
        latency = speed.get("seconds_per_answer", float("inf"))
        checks.append(
            {
                "check": "seconds per answer",
                "value": latency,
                "limit": f"<= {params.max_latency_s:g}",
                "passed": latency <= params.max_latency_s,
            }
        )
    if params.max_memory_mb is not None:
        checks.append(
            {
                "check": "peak memory (MB)",
                "value": speed["peak_rss_mb"],
                "limit": f"<= {params.max_memory_mb:g}",
                "passed": speed["peak_rss_mb"] <= params.max_memory_mb,
            }
        )
    if all(c["passed"] for c in checks):
        decision = "deploy"
    elif tuned <= base:
        decision = "abort"
    else:
        decision = "iterate"
    reasons = [f"{c['check']}: {c['value']:g} (needs {c['limit']}) {'ok' if c['passed'] else 'FAILED'}" for c in checks]
    return {
        "verdict": decision,
        "shipped": sizes["shipped"],
        "metric": params.metric,
        "checks": checks,
        "reasons": reasons,
    }


def run(params: GateParams, evaluation: Path, gguf: Path, out: Path) -> dict:
    """Decide and record the verdict; fail instead when gate.enforce is on and it is not deploy."""
    metrics = json.loads((evaluation / "metrics.json").read_text())
    sizes = json.loads((gguf / "sizes.json").read_text())
    result = {**verdict(metrics, sizes, params), "enforced": params.enforce}
    summary = "\n".join(f"  {r}" for r in result["reasons"])
    if result["verdict"] != "deploy" and params.enforce:
        raise StepError(
            f"gate: the verdict is {result['verdict'].upper()}, not deploy (gate.enforce is on):\n{summary}\n"
            "Set gate.enforce: false to record the verdict and build the report."
        )
    if result["verdict"] != "deploy":
        log.warning(
            "gate: the verdict is %s (not enforced; set gate.enforce: true to fail on it):\n%s",
            result["verdict"].upper(),
            summary,
        )
    else:
        log.info("gate: DEPLOY %s\n%s", result["shipped"], summary)
    write_json(out, result)
    return result
