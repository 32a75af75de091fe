"""evaluate: the tuned model and every GGUF file on the held-out test split, beside the base model's scores.

The base's row comes from the baseline step (tunemake.steps.baseline), scored once by the same functions
(tunemake.evaluation.heldout), so a new training run or sweep point scores only what changed.

The tuned model is the one the pipeline ships: the merged SFT model, the align step's DPO model when align ran, or
the reinforce step's GRPO model when reinforce ran; then the SFT model is scored too (row "sft", its answers from
transformers), so the report and the gate show what alignment changed, and with both align and reinforce on the DPO
model as well (row "dpo"): SFT alone, + DPO, + GRPO. `reinforcement` gives what GRPO changed on the test rows
against the model it started from (tool-call exact match and no-call, paired over rows, with 95% intervals). Every
transformers model also scores the held-out preference pairs (results/pairs): the share whose chosen answer it finds
more likely than the rejected one, and the mean log-likelihood margin.

For each model: teacher-forced loss and perplexity on the assistant tokens (transformers models), greedy answers
scored against the reference (exact match, ROUGE-L, and the schema-aware tool-call scores of
tunemake.evaluation.scoring), and speed (prompt and generation tokens/s, time to first token, the process's peak
memory). Each model runs in a fresh process, so its peak memory is its own and no model's memory lingers into the next
one.

The prompt is every turn before the reference (the last assistant turn). Every GGUF file is asked as users call
it (eval.served, the default): llama-server --jinja on the file, the row's messages and OpenAI `tools` through the
openai client, the file's own chat template rendering them, and the server's parsed `tool_calls` scored (a call
the server cannot parse counts as none). With eval.served off, llama-cpp-python answers in-process instead. No model
answers twice: the tuned model's answers are its unquantized GGUF's, the base model's its 16-bit GGUF's
(tunemake.llama.llamacpp.base_gguf, the suite's), and transformers answers only the rows it times, which double as a
check that the two engines agree (metrics.json `engine_check`, per model; a difference is logged and shown in the
report). Only the SFT model beside an aligned one, which has no GGUF, answers in transformers.

The regression suite (results/suite, see tunemake.steps.suite): the shipped GGUF (or every GGUF, eval.suite_models)
answers the general prompts the base answered, greedily, through the same server (its completions endpoint); each answer's
degenerate reasons, whether it ended its turn, and the checkable prompts' scores go to general_samples.jsonl. Drift:
the tuned model's loss on the base's own answers minus the base's (nats per token), one teacher-forced pass, over
every conversation and over those the base answered soundly (sound_answers: not degenerate, from a base that ends
its turns). Each
model's `general` summary carries 95% intervals like the test scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

from tunemake.data.jsonl import atomic_dir, read_jsonl, write_json, write_jsonl
from tunemake.errors import StepError
from tunemake.evaluation.heldout import (
    in_fresh_process,
    read_test_pairs,
    read_test_rows,
    score_gguf,
    score_transformers,
    suite_request,
)
from tunemake.evaluation.summaries import (
    drift_summary,
    engine_check,
    general_scores,
    general_summary,
    preference_change,
    preference_summary,
    score_change,
    sound_answers,
    speed,
    summarise,
)
from tunemake.models.weights import final_model
from tunemake.params import load as load_params
from tunemake.params.eval import EvalParams

log = logging.getLogger("tunemake")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--align", type=Path, help="the align step's output: its model is the tuned one when it ran")
    parser.add_argument(
        "--reinforce", type=Path, help="the reinforce step's output: its model is the tuned one when it ran"
    )
    parser.add_argument("--pairs", type=Path, help="the pairs step's output: its test pairs are scored")
    for name, what in (
        ("baseline", "baseline"),
        ("merged", "merge"),
        ("gguf", "gguf"),
        ("data", "prepare"),
        ("tokenized", "tokenize"),
        ("suite", "suite"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {what} step's output")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(
        load_params(args.params, args.set, eval=EvalParams).eval,
        args.baseline,
        args.merged,
        args.align,
        args.gguf,
        args.data,
        args.pairs,
        args.tokenized,
        args.suite,
        args.out,
        args.reinforce,
    )


def read_baseline(baseline: Path, params: EvalParams) -> dict:
    """The baseline step's base row, refused when it was scored with other eval settings than this run's."""
    result = json.loads((baseline / "base.json").read_text())
    ours = params.model_dump(include=set(result["settings"]))
    if result["settings"] != ours:
        raise StepError(
            f"{baseline / 'base.json'} scored the base with eval settings {result['settings']}, this run has {ours}: "
            "run the baseline step again with this run's eval settings (snakemake and dvc repro do)"
        )
    return result


def run(
    params: EvalParams,
    baseline: Path,
    merged: Path,
    align: Path | None,
    gguf: Path,
    data: Path,
    pairs_dir: Path | None,
    tokenized: Path,
    suite_dir: Path,
    out: Path,
    reinforce: Path | None = None,
) -> dict:
    rows, pairs = read_test_rows(data, params), read_test_pairs(pairs_dir, params)
    tuned_dir, before_rl = final_model(merged, align, reinforce), final_model(merged, align)
    suite = read_jsonl(suite_dir / "suite.jsonl")
    asked = suite_request(suite_dir)
    sizes = json.loads((gguf / "sizes.json").read_text())
    unquantized = f"gguf-{sizes['unquantized']}"
    # The base and tuned models' answers are their 16-bit GGUFs' (llama.cpp is several times faster than
    # transformers here); transformers answers only the timed rows, which check that both engines agree. The base
    # row comes from the baseline step, scored by the same functions.
    answered_by = {"base": "gguf-base", "tuned": unquantized}
    models = {
        **({"sft": (score_transformers, str(merged), str(tokenized), True, pairs)} if tuned_dir != merged else {}),
        **(
            {"dpo": (score_transformers, str(before_rl), str(tokenized), True, pairs)}
            if merged != before_rl != tuned_dir
            else {}
        ),
        "tuned": (score_transformers, str(tuned_dir), str(tokenized), False, pairs),
        **{
            f"gguf-{name}": (score_gguf, str(gguf / sizes["files"][name]["file"]), str(tuned_dir))
            for name in sizes["order"]
        },
    }
    # Who answers the suite: the shipped GGUF (the gate judges it) or every GGUF; the base and tuned models give
    # their losses on the base's answers (drift).
    ggufs = {f"gguf-{name}" for name in sizes["order"]}
    asks = {"tuned"} | ({f"gguf-{sizes['shipped']}"} if params.suite_models == "shipped" else ggufs)
    results = {"base": read_baseline(baseline, params)}
    for name, (function, *where) in models.items():
        started = time.perf_counter()
        results[name] = in_fresh_process(function, *where, rows, params.model_dump(), asked if name in asks else None)
        log.info("evaluate: %s in %.0fs", name, time.perf_counter() - started)
    for key in ("answers", "stopped", "calls", "answered_with_tool_calls"):
        if key in results[unquantized]:
            results["tuned"][key] = results[unquantized][key]
    metrics = {
        "test_rows": len(rows),
        "tool_call_rows": sum(bool(r["reference_calls"]) for r in rows),
        "no_call_rows": sum(bool(r["tools"]) and not r["reference_calls"] for r in rows),
        "answered_by": "llama-server --jinja, OpenAI chat completions with tools"
        if params.served
        else "llama-cpp-python in-process",
        "aligned": before_rl != merged,
        "reinforced": tuned_dir != before_rl,
        "preference_pairs": len(pairs),
        "engine_check": {name: engine_check(rows, results[name], name, gguf) for name, gguf in answered_by.items()},
        "models": {},
    }
    answers, row_scores = {}, {}
    general_answers = {"base": [r["base"]["answer"] for r in suite]}
    general_rows = {"base": general_scores(suite, general_answers["base"], [r["base"]["stopped"] for r in suite])}
    base_losses, tuned_losses = results["base"]["drift_losses"], results["tuned"]["drift_losses"]
    log.info(
        "evaluate: base and tuned losses on the base's general answers in %.0fs (baseline, %s) and %.0fs (%s)",
        results["base"]["drift_seconds"],
        results["base"]["scoring_precision"],
        results["tuned"]["drift_seconds"],
        results["tuned"]["scoring_precision"],
    )
    metrics["scoring_precision"] = results["tuned"]["scoring_precision"]
    for name, result in results.items():
        summary, row_scores[name] = summarise(rows, result["answers"], result["stopped"], result.get("calls"))
        if "answered_with_tool_calls" in result:  # tool rows the server answered with parsed tool_calls
            summary["answered_with_tool_calls"] = result["answered_with_tool_calls"]
        if "general" in result:
            answered = result["general"]
            general_answers[name] = answered["answers"]
            general_rows[name] = general_scores(suite, answered["answers"], answered["stopped"])
            log.info("evaluate: %s answered the %d general prompts in %.0fs", name, len(suite), answered["seconds"])
        if name in general_rows:
            summary["general"] = general_summary(suite, general_rows[name])
        if name == "tuned":
            summary["general"] = drift_summary(base_losses, tuned_losses, sound_answers(general_rows["base"]))
        if result["loss"] is not None:
            summary = {"loss": round(result["loss"], 4), "perplexity": round(math.exp(result["loss"]), 3), **summary}
        if result.get("pairs"):
            summary["preference"] = preference_summary(result["pairs"])
        summary["speed"] = speed(result["timings"], result["peak_rss_mb"])
        metrics["models"][name] = summary
        answers[name] = result["answers"]
        log.info(
            "evaluate: %s: exact match %s, ROUGE-L %s, tool-call exact match %s, prefers chosen %s, %s gen tok/s",
            name,
            summary["exact_match"],
            summary["rouge_l"],
            summary.get("tool_calls", {}).get("exact_match"),
            summary.get("preference", {}).get("accuracy"),
            summary["speed"].get("generation_tokens_per_second"),
        )
    aligned = "dpo" if "dpo" in results else "tuned"
    if metrics["aligned"] and pairs:  # align ran: the DPO model against the SFT model it started from
        metrics["alignment"] = preference_change(results["sft"]["pairs"], results[aligned]["pairs"])
        log.info("evaluate: DPO minus SFT on the held-out pairs: %s", metrics["alignment"])
    if metrics["reinforced"]:  # GRPO against the model it started from, on the test rows
        before = "dpo" if "dpo" in results else "sft"
        metrics["reinforcement"] = {"from": before, **score_change(row_scores[before], row_scores["tuned"])}
        log.info("evaluate: GRPO minus %s on the test rows: %s", before, metrics["reinforcement"])
    with atomic_dir(out) as tmp:
        write_json(tmp / "metrics.json", metrics)
        write_jsonl(
            tmp / "samples.jsonl",
            (
                {
                    "id": row["id"],
                    "prompt": row["prompt"][-1]["content"],
                    "reference": row["reference"],
                    "answers": {name: answers[name][i] for name in answers},
                    "scores": {name: row_scores[name][i] for name in answers},
                }
                for i, row in enumerate(rows)
            ),
        )
        write_jsonl(  # each held-out pair's log-likelihoods per model, to see which pairs a model gets wrong
            tmp / "pairs.jsonl",
            (
                {
                    "id": pair["id"],
                    **{
                        name: dict(zip(("chosen", "rejected"), results[name]["pairs"][i]))
                        for name in results
                        if results[name].get("pairs")
                    },
                }
                for i, pair in enumerate(pairs)
            ),
        )
        write_jsonl(
            tmp / "general_samples.jsonl",
            (
                {
                    "id": row["id"],
                    "kind": row["kind"],
                    "system": row["system"],
                    "prompt": row["prompt"],
                    "answers": {name: general_answers[name][i] for name in general_answers},
                    "scores": {name: general_rows[name][i] for name in general_rows},
                    "base_loss": round(base_losses[i], 5),
                    "tuned_loss": round(tuned_losses[i], 5),
                }
                for i, row in enumerate(suite)
            ),
        )
    return metrics
