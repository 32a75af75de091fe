"""report: one page that says whether the fine-tune worked and whether it is safe to ship.

results/report/ holds index.html (self-contained: plots embedded as data URIs, no network), report.md (the same
tables, plots as PNG files beside it) and the PNGs. The verdict is the gate step's (results/gate.json): the report
shows it, it does not decide it.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
from pathlib import Path

import yaml
from tabulate import tabulate

from tunemake.data.jsonl import atomic_dir, read_jsonl
from tunemake.evaluation.headline import FILE
from tunemake.params import overridden
from tunemake.report.plots import plot_alignment, plot_losses, plot_reinforcement, plot_scores, save
from tunemake.report.tables import BFCL_NOTE, SWEEP_NOTE, headline_rows, model_order, sweep_rows, sweep_title, tables

log = logging.getLogger("tunemake")
SAMPLES = 6  # held-out answers shown side by side, where the last step changed them first
GENERAL_SAMPLES = 3  # general prompts shown side by side, regressions first


def base_note(result: dict) -> str | None:
    """The line atop the regression section when the base answered most general prompts badly."""
    base = result["base_answers"]
    if not base["mostly_broken"]:
        return None
    return (
        f"The base model answered only {base['sound']} of {base['conversations']} general conversations soundly "
        f"({base['degenerate_rate']:g}% degenerate, {base['unfinished_rate']:g}% unfinished at the cap): it is a "
        "pretrained model, or a poorly chosen one."
    )


def held_out_samples(samples: list[dict]) -> list[dict]:
    """A few held-out rows side by side: where the shipped model answers otherwise than the model before its last step
    (GRPO's start, or DPO's), then where it answers otherwise than the base, then any, each group in test order."""
    before = next((name for name in ("dpo", "sft") if samples and name in samples[0]["answers"]), "base")

    def rank(s: dict) -> int:
        answers = s["answers"]
        return 0 if answers["tuned"] != answers[before] else 1 if answers["tuned"] != answers["base"] else 2

    return sorted(samples, key=rank)[:SAMPLES]


def general_samples(samples: list[dict], shipped: str) -> list[dict]:
    """A few general prompts side by side: where the shipped model broke and the base did not, then where their
    answers differ, then any; each answer with its degenerate reasons."""
    shipped = f"gguf-{shipped}"

    def rank(s: dict) -> int:
        broke = bool(s["scores"][shipped]["degenerate"]) and not s["scores"]["base"]["degenerate"]
        return 0 if broke else 1 if s["answers"][shipped] != s["answers"]["base"] else 2

    picked = sorted(samples, key=rank)[:GENERAL_SAMPLES]
    return [
        {
            "id": f"{s['id']} ({s['kind']}, system turn: {s['system']})",
            "prompt": s["prompt"],
            "answers": {
                name: s["answers"][name] + (f"  [degenerate: {', '.join(reasons)}]" if reasons else "")
                for name in s["answers"]
                for reasons in [s["scores"][name]["degenerate"]]
            },
        }
        for s in picked
    ]


def engines(metrics: dict) -> str:
    """Where the base and tuned models' answers come from, and whether transformers agreed on the rows it timed."""
    lines = []
    for name, check in metrics["engine_check"].items():
        agreed = f"transformers gave the same answer on {check['equal']} of the {check['rows']} rows it timed"
        differing = "; differing: " + ", ".join(d["id"] for d in check["differing"]) if check["differing"] else ""
        lines.append(f"The {name} model's answers are those of {check['answers_from']}: {agreed}{differing}.")
    if metrics.get("answered_by", "").startswith("llama-server"):
        lines.append(
            "Every GGUF answered through llama-server --jinja as an OpenAI client asks it (tools in, the server's "
            "parsed tool_calls scored); "
            + ", ".join(
                f"{name} with tool_calls on {summary['answered_with_tool_calls']} of the {metrics['tool_call_rows']} "
                "tool rows"
                for name, summary in metrics["models"].items()
                if name.startswith("gguf-") and "answered_with_tool_calls" in summary
            )
            + "."
        )
    return " ".join(lines)


def pages(context: dict) -> dict[str, str]:
    """index.html and report.md, each from its template (tunemake/report/templates/) and one context: the two say the
    same. The HTML page carries its plots inline; the Markdown one links the PNGs beside it."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader("tunemake.report"), autoescape=select_autoescape())

    def table(name: str) -> str:
        headers, rows = context["tables"][name]
        return tabulate(rows, headers=headers, tablefmt="github", missingval="-")

    return {
        "index.html": environment.get_template("report.html").render(**context),
        "report.md": environment.get_template("report.md").render(**context, table=table),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--align", type=Path, help="the align step's output (its table and curves, when it ran)")
    parser.add_argument("--reinforce", type=Path, help="the reinforce step's output (its table and reward curves)")
    for name, what in (("data", "prepare"), ("trained", "train"), ("gguf", "gguf"), ("eval", "evaluate")):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {what} step's output")
    parser.add_argument("--gate", type=Path, required=True, help="the gate step's verdict (JSON)")
    parser.add_argument("--headline", type=Path, help="the gate step's headline (JSON), shown with train's and align's")
    parser.add_argument("--sweep", type=Path, help="the sweep step's output (its table and plot), when one ran")
    parser.add_argument("--bfcl", type=Path, help="the bfcl step's output (its table)")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(
        args.params,
        args.data,
        args.trained,
        args.align,
        args.gguf,
        args.eval,
        args.gate,
        args.out,
        args.set,
        args.sweep,
        args.headline,
        args.bfcl,
        args.reinforce,
    )


def run(
    params_file: Path,
    data: Path,
    trained: Path,
    align: Path | None,
    gguf: Path,
    evaluation: Path,
    gate: Path,
    out: Path,
    overrides: list[str] = (),
    sweep: Path | None = None,
    gate_headline: Path | None = None,
    bfcl: Path | None = None,
    reinforce: Path | None = None,
) -> dict:
    stats = json.loads((data / "stats.json").read_text())
    history = json.loads((trained / "history.json").read_text())
    summary = json.loads((trained / "summary.json").read_text())
    aligned = json.loads((align / "summary.json").read_text()) if align else {"enabled": False}
    metrics = json.loads((evaluation / "metrics.json").read_text())
    sizes = json.loads((gguf / "sizes.json").read_text())
    samples = held_out_samples(read_jsonl(evaluation / "samples.jsonl"))
    result = json.loads(gate.read_text())
    general = general_samples(read_jsonl(evaluation / "general_samples.jsonl"), result["shipped"])
    scored = json.loads((bfcl / "summary.json").read_text()) if bfcl else {}
    reinforced = json.loads((reinforce / "summary.json").read_text()) if reinforce else {"enabled": False}
    tabs = tables(stats, summary, aligned, metrics, sizes, result, scored, reinforced)
    tabs["headline"] = headline_rows(
        [
            trained / FILE,
            *(folder / FILE for folder in (align, reinforce) if folder),
            *([gate_headline] if gate_headline else []),
        ]
    )
    swept = json.loads((sweep / "sweep.json").read_text()) if sweep else None
    tabs["sweep"] = sweep_rows(swept) if swept else ([], [])
    params_text = yaml.safe_dump(overridden(yaml.safe_load(params_file.read_text()), overrides), sort_keys=False)
    with atomic_dir(out) as tmp:
        plots = {
            "losses": save(plot_losses(history), tmp / "losses.png"),
            "scores": save(plot_scores(metrics, model_order(metrics, sizes)), tmp / "scores.png"),
        }
        if aligned.get("enabled"):
            history_file = align / "history.json"
            plots["alignment"] = save(plot_alignment(json.loads(history_file.read_text())), tmp / "alignment.png")
        if reinforced.get("enabled"):
            history_file = reinforce / "history.json"
            figure = plot_reinforcement(json.loads(history_file.read_text()))
            plots["reinforcement"] = save(figure, tmp / "reinforcement.png")
        if swept:
            png = (sweep / "sweep.png").read_bytes()
            (tmp / "sweep.png").write_bytes(png)
            plots["sweep"] = "data:image/png;base64," + base64.b64encode(png).decode()
        context = dict(
            result=result,
            tables=tabs,
            plots=plots,
            samples=samples,
            general=general,
            general_count=metrics["models"]["base"]["general"]["conversations"],
            base_note=base_note(result),
            params_text=params_text,
            swept=swept and {"title": sweep_title(swept), "note": SWEEP_NOTE},
            summary=summary,
            metrics=metrics,
            engines=engines(metrics),
            bfcl_note=BFCL_NOTE,
        )
        for name, text in pages(context).items():
            (tmp / name).write_text(text, encoding="utf-8")
    log.info("report: verdict %s -> %s", result["verdict"].upper(), out / "index.html")
    return result
