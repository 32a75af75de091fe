"""gate: deploy, iterate or abort, from the held-out metrics and the thresholds in params.yaml `gate`.

deploy: every check passes. abort: the tuned model does not beat the base model at all. iterate: anything else
(try more epochs, another learning rate, more data). The quant check compares the shipped quant with our own F16
GGUF of the same model, never with another model: perplexity and scores only compare within one model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tunemake.errors import StepError
from tunemake.jsonl import write_json
from tunemake.params import GateParams

log = logging.getLogger("tunemake")


def score(metrics: dict, model: str, metric: str) -> float:
    value = metrics["models"].get(model, {})
    for key in metric.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        raise StepError(f"gate.metric {metric!r} has no value for {model!r} in the evaluation (no tool-call rows in the "
                        "test split?); set gate.metric in params.yaml to exact_match or rouge_l")
    return value


def verdict(metrics: dict, sizes: dict, params: GateParams) -> dict:
    shipped, unquantized = f"gguf-{sizes['shipped']}", f"gguf-{sizes['unquantized']}"
    tuned, base = score(metrics, "tuned", params.metric), score(metrics, "base", params.metric)
    checks = [
        {"check": f"tuned {params.metric}", "value": tuned, "limit": f">= {params.min_score:g}", "passed": tuned >= params.min_score},
        {"check": "gain over base", "value": round(tuned - base, 1), "limit": f">= {params.min_gain:g}",
         "passed": tuned - base >= params.min_gain},
    ]
    if shipped != unquantized:
        drop = round(score(metrics, unquantized, params.metric) - score(metrics, shipped, params.metric), 1)
        checks.append({"check": f"{sizes['shipped']} drop vs {unquantized[5:]}", "value": drop,
                       "limit": f"<= {params.max_quant_drop:g}", "passed": drop <= params.max_quant_drop})
    speed = metrics["models"][shipped]["speed"]
    if params.max_latency_s is not None:
        latency = speed.get("seconds_per_answer", float("inf"))
        checks.append({"check": "seconds per answer", "value": latency, "limit": f"<= {params.max_latency_s:g}",
                       "passed": latency <= params.max_latency_s})
    if params.max_memory_mb is not None:
        checks.append({"check": "peak memory (MB)", "value": speed["peak_rss_mb"], "limit": f"<= {params.max_memory_mb:g}",
                       "passed": speed["peak_rss_mb"] <= params.max_memory_mb})
    if all(c["passed"] for c in checks):
        decision = "deploy"
    elif tuned <= base:
        decision = "abort"
    else:
        decision = "iterate"
    reasons = [f"{c['check']}: {c['value']:g} (needs {c['limit']}) {'ok' if c['passed'] else 'FAILED'}" for c in checks]
    return {"verdict": decision, "shipped": sizes["shipped"], "metric": params.metric, "checks": checks, "reasons": reasons}


def run(params: GateParams, verdict_file: Path, out: Path) -> dict:
    """Fail the pipeline when gate.enforce is on and the verdict is not deploy; else record the verdict."""
    import json

    result = json.loads(verdict_file.read_text())
    summary = "\n".join(f"  {r}" for r in result["reasons"])
    if result["verdict"] != "deploy" and params.enforce:
        raise StepError(f"gate: the verdict is {result['verdict'].upper()}, not deploy (gate.enforce is on):\n{summary}\n"
                        f"The report explains it: results/report/index.html")
    if result["verdict"] != "deploy":
        log.warning("gate: the verdict is %s (not enforced; set gate.enforce: true to fail on it):\n%s",
                    result["verdict"].upper(), summary)
    write_json(out, {"verdict": result["verdict"], "enforced": params.enforce, "shipped": result["shipped"]})
    return result
