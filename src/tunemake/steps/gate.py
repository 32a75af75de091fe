"""gate: decide deploy, iterate or abort from the held-out metrics and the thresholds in params.yaml `gate`.

The verdict, each check with its value, 95% interval and limit, and the reasons go to results/gate.json, which the
report shows; the verdict and the few scores it rests on, under plain names, to results/headline.json, which
`dvc exp show` lists (tunemake.evaluation.headline). Comparisons (gain over base, quant drop) are paired over the test
rows; a gain must be told apart from noise, and a quant drop blocks deploy only on evidence (see `check`). With
gate.enforce on, a verdict other than deploy fails the step (and so the pipeline).

Regressions are judged on the general prompts (results/suite, tunemake.evaluation.general), which no training row
shares: the shipped model's degenerate answers and checkable answers against the base model's, and the tuned model's
drift (its loss on the base's own answers minus the base's). They are harms, so each blocks on evidence: its 95%
interval lies past the limit. Drift is judged only where the base answered soundly
(tunemake.evaluation.summaries.sound_answers: not degenerate, from a base that ends its turns; gate.drift_on: all
judges every conversation): moving away from a broken answer is no harm. A pretrained base never ends its turn, so there drift is not
applicable, and `base_answers` says the base is mostly broken; degenerate and checkable answers are still compared with
the base's, so a tuned model worse than a bad base still fails.

deploy: every check passes. abort: the tuned model does not beat the base model at all. iterate: anything else
(try more epochs, another learning rate, more data, replay); `regressions` names the failed regression checks.
The quant check compares the shipped quant with our own F16 GGUF of the same model, never with another model:
perplexity and scores only compare within one model. When align or reinforce ran, the shipped model's score against
the SFT model's (gate.max_align_drop) is a harm check too: DPO and GRPO must not cost the task what SFT taught.

Restraint is a regression too: where no offered tool fits, the shipped model must not call one more often than the
base, beyond noise, on our no-call test rows and on BFCL irrelevance (tunemake.steps.bfcl); gate.max_bfcl_drop can also
judge BFCL's other categories.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tunemake.data.jsonl import dotted, read_jsonl, write_json
from tunemake.errors import StepError
from tunemake.evaluation import headline
from tunemake.evaluation.stats import paired_interval
from tunemake.params import load as load_params
from tunemake.params.gate import GateParams

log = logging.getLogger("tunemake")
DRIFT = "drift: tuned loss on the base's general answers minus the base's (nats/token)"
MIN_SOUND = 10  # fewer sound base answers than this: too few to judge drift on


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval", type=Path, required=True, help="the evaluate step's output")
    parser.add_argument("--gguf", type=Path, required=True, help="the gguf step's output (which quant is shipped)")
    parser.add_argument("--bfcl", type=Path, help="the bfcl step's output: restraint on BFCL irrelevance is judged")
    parser.add_argument("--out", type=Path, required=True, help="the verdict, as JSON")
    parser.add_argument(
        "--headline", type=Path, required=True, help="the verdict and the scores it rests on, for dvc exp show (JSON)"
    )


def main(args: argparse.Namespace) -> None:
    run(
        load_params(args.params, args.set, gate=GateParams).gate,
        args.eval,
        args.gguf,
        args.out,
        args.headline,
        args.bfcl,
    )


def score(metrics: dict, model: str, metric: str) -> float:
    value = dotted(metrics["models"].get(model, {}), metric)
    if value is None:
        raise StepError(
            f"gate.metric {metric!r} has no value for {model!r} in the evaluation (no tool-call rows in the "
            "test split?); set gate.metric in params.yaml to exact_match or rouge_l"
        )
    return value


def paired(samples: list[dict], a: str, b: str, metric: str) -> list[float] | None:
    """The 95% interval of model a's score minus model b's, resampling the rows both were scored on. A list
    (degenerate reasons) counts as 1 when not empty; rows where either has no value (None) are left out."""

    def value(scores: dict):
        found = dotted(scores, metric)
        return float(bool(found)) if isinstance(found, list) else found

    pairs = [(value(s["scores"][a]), value(s["scores"][b])) for s in samples]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    return paired_interval([x for x, _ in pairs], [y for _, y in pairs])


def regression_checks(metrics: dict, samples: list[dict], shipped: str, label: str, params: GateParams) -> list[dict]:
    general = {name: model.get("general") for name, model in metrics["models"].items()}
    checks = [
        check(
            f"degenerate general answers, {label} minus base",
            general[shipped]["degenerate_rate"] - general["base"]["degenerate_rate"],
            params.max_degenerate_increase,
            at_least=False,
            ci=paired(samples, shipped, "base", "degenerate"),
            burden="harm",
        )
    ]
    if general["base"]["checkable"] is not None:
        checks.append(
            check(
                f"checkable general answers, base minus {label}",
                general["base"]["checkable"] - general[shipped]["checkable"],
                params.max_checkable_drop,
                at_least=False,
                ci=paired(samples, "base", shipped, "checkable"),
                burden="harm",
            )
        )
    checks.append(drift_check(general, params))
    return [{**c, "regression": True} for c in checks]


def restraint_checks(metrics: dict, samples: list[dict], bfcl: dict, label: str, params: GateParams) -> list[dict]:
    """Not calling where no offered tool fits, the shipped model against the base, paired over the same rows: our
    no-call test rows and BFCL irrelevance (gate.max_no_call_drop); with gate.max_bfcl_drop set, BFCL's other
    categories too. Harms: each blocks on evidence only."""
    shipped = f"gguf-{label}"
    checks = []
    if metrics["models"]["base"].get("no_call") is not None:
        checks.append(
            check(
                f"no call where none fits: base minus {label}, our test rows",
                metrics["models"]["base"]["no_call"] - metrics["models"][shipped]["no_call"],
                params.max_no_call_drop,
                at_least=False,
                ci=paired(samples, "base", shipped, "no_call"),
                burden="harm",
            )
        )
    for category, scores in (bfcl.get("categories") or {}).items():
        limit = params.max_no_call_drop if category == "irrelevance" else params.max_bfcl_drop
        if limit is None:
            continue
        change = scores["minus_base"]["shipped"]
        checks.append(
            check(
                f"BFCL {category}: base minus {label}",
                0.0 - change["value"],  # 0.0 - x: no "-0" where nothing changed
                limit,
                at_least=False,
                ci=[0.0 - change["ci95"][1], 0.0 - change["ci95"][0]] if change["ci95"] else None,
                burden="harm",
            )
        )
    return [{**c, "regression": True} for c in checks]


def drift_check(general: dict, params: GateParams) -> dict:
    """Drift on the conversations the base answered soundly (gate.drift_on: sound), or on all of them. Moving away
    from a degenerate or rambling answer is what a fine-tune of a pretrained base is for, so where too few answers
    are sound drift is not applicable: it passes, and says why."""
    tuned, base = general["tuned"], general["base"]
    total, sound = tuned["conversations"], tuned["sound_conversations"]
    if params.drift_on == "all":
        value, ci, scope = tuned["drift"], tuned["ci95"]["drift"], f"on all {total} conversations"
    elif sound >= MIN_SOUND:
        value, ci = tuned["drift_sound"], tuned["ci95"]["drift_sound"]
        scope = f"on the {sound} of {total} conversations the base answered soundly"
    else:
        return {
            "check": DRIFT,
            "value": None,
            "ci95": None,
            "limit": f"<= {params.max_drift:g}",
            "status": "not applicable",
            "passed": True,
            "scope": f"the base answered only {sound} of {total} conversations soundly ({base['degenerate_rate']:g}% "
            f"degenerate, {base['unfinished_rate']:g}% unfinished at the cap)",
        }
    return {**check(DRIFT, value, params.max_drift, at_least=False, ci=ci, burden="harm"), "scope": scope}


def base_answers(general: dict) -> dict:
    """How well the base answered the suite. Mostly unsound answers mean a pretrained base, or a poorly chosen one."""
    tuned, base = general["tuned"], general["base"]
    return {
        "conversations": tuned["conversations"],
        "sound": tuned["sound_conversations"],
        "degenerate_rate": base["degenerate_rate"],
        "unfinished_rate": base["unfinished_rate"],
        "mostly_broken": tuned["sound_conversations"] < tuned["conversations"] / 2,
    }


def check(name: str, value: float, limit: float, *, at_least: bool, ci=None, burden: str = "estimate") -> dict:
    """Judge one check, by who must prove what (`burden`):

    - "estimate": the user's own bar (min_score, latency, memory) is met by the measured value; an interval is shown.
    - "improvement": gain over base: the estimate meets the limit and its 95% interval lies above 0, so noise never
      earns a deploy.
    - "harm": quant drop: fails only on evidence. An estimate past the limit whose interval still reaches it is
      "within noise" (a row or two either way would meet it): reported, not blocking. So a one-row difference at
      the limit does not flip the verdict.
    """
    meets = value >= limit if at_least else value <= limit
    if burden == "improvement" and meets and ci is not None and ci[0] <= 0:
        status = "fail"  # the gain cannot be told from no gain
    elif meets:
        status = "pass"
    elif burden == "harm" and ci is not None and (ci[1] >= limit if at_least else ci[0] <= limit):
        status = "within noise"
    else:
        status = "fail"
    needs = f"{'>=' if at_least else '<='} {limit:g}" + (", interval above 0" if burden == "improvement" else "")
    return {
        "check": name,
        "value": round(value, 3),
        "ci95": ci,
        "limit": needs,
        "status": status,
        "passed": status != "fail",
    }


def verdict(
    metrics: dict, samples: list[dict], general: list[dict], sizes: dict, params: GateParams, bfcl: dict | None = None
) -> dict:
    shipped, unquantized = f"gguf-{sizes['shipped']}", f"gguf-{sizes['unquantized']}"
    metric = params.metric
    tuned, base = score(metrics, "tuned", metric), score(metrics, "base", metric)
    checks = [
        check(
            f"tuned {metric}",
            tuned,
            params.min_score,
            at_least=True,
            ci=metrics["models"]["tuned"].get("ci95", {}).get(metric),
        ),
        check(
            "gain over base",
            tuned - base,
            params.min_gain,
            at_least=True,
            ci=paired(samples, "tuned", "base", metric),
            burden="improvement",
        ),
    ]
    if shipped != unquantized:
        drop = score(metrics, unquantized, metric) - score(metrics, shipped, metric)
        checks.append(
            check(
                f"{sizes['shipped']} drop vs {sizes['unquantized']}",
                drop,
                params.max_quant_drop,
                at_least=False,
                ci=paired(samples, unquantized, shipped, metric),
                burden="harm",
            )
        )
    if "sft" in metrics["models"]:  # align or reinforce ran: DPO and GRPO must not cost the task what SFT taught
        checks.append(
            check(
                f"alignment drop: sft minus tuned {metric}",
                score(metrics, "sft", metric) - tuned,
                params.max_align_drop,
                at_least=False,
                ci=paired(samples, "sft", "tuned", metric),
                burden="harm",
            )
        )
    checks += regression_checks(metrics, general, shipped, sizes["shipped"], params)
    checks += restraint_checks(metrics, samples, bfcl or {}, sizes["shipped"], params)
    speed = metrics["models"][shipped]["speed"]
    if params.max_latency_s is not None:
        latency = speed.get("seconds_per_answer", float("inf"))
        checks.append(check("seconds per answer", latency, params.max_latency_s, at_least=False))
    if params.max_memory_mb is not None:
        checks.append(check("peak memory (MB)", speed["peak_rss_mb"], params.max_memory_mb, at_least=False))
    if all(c["passed"] for c in checks):
        decision = "deploy"
    elif tuned <= base:
        decision = "abort"
    else:
        decision = "iterate"
    return {
        "verdict": decision,
        "shipped": sizes["shipped"],
        "metric": metric,
        "checks": checks,
        "regressions": [c["check"] for c in checks if c.get("regression") and not c["passed"]],
        "base_answers": base_answers({name: model.get("general") for name, model in metrics["models"].items()}),
        "reasons": [reason(c) for c in checks],
    }


def reason(c: dict) -> str:
    if c["status"] == "not applicable":
        return f"{c['check']}: not applicable, {c['scope']}"
    interval = f" [95% interval {c['ci95'][0]:g} to {c['ci95'][1]:g}]" if c["ci95"] else ""
    status = {"pass": "ok", "within noise": "within noise (does not block)", "fail": "FAILED"}[c["status"]]
    scope = f", {c['scope']}" if c.get("scope") else ""
    return f"{c['check']}: {c['value']:g}{interval} (needs {c['limit']}) {status}{scope}"


def run(
    params: GateParams,
    evaluation: Path,
    gguf: Path,
    out: Path,
    headline_out: Path | None = None,
    bfcl: Path | None = None,
) -> dict:
    """Decide and record the verdict, and its headline (tunemake.evaluation.headline) at headline_out; fail instead when
    gate.enforce is on and it is not deploy."""
    metrics = json.loads((evaluation / "metrics.json").read_text())
    samples = read_jsonl(evaluation / "samples.jsonl")
    general = read_jsonl(evaluation / "general_samples.jsonl")
    sizes = json.loads((gguf / "sizes.json").read_text())
    scored = json.loads((bfcl / "summary.json").read_text()) if bfcl else {}
    result = {**verdict(metrics, samples, general, sizes, params, scored), "enforced": params.enforce}
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
    if headline_out is not None:
        write_json(headline_out, headline.gate(result, metrics, scored))
    return result
