"""report: one page that says whether the fine-tune worked and whether it is safe to ship.

results/report/ holds index.html (self-contained: plots embedded as data URIs, no network), report.md (the same
tables, plots as PNG files beside it) and the PNGs. The verdict is the gate step's (results/gate.json): the report
shows it, it does not decide it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
from pathlib import Path

import yaml
from tabulate import tabulate

from tunemake.headline import FILE, score_name
from tunemake.jsonl import atomic_dir, read_jsonl
from tunemake.params import overridden

log = logging.getLogger("tunemake")
SAMPLES = 6  # sample answers shown side by side
GENERAL_SAMPLES = 3  # general prompts shown side by side, regressions first

BFCL_NOTE = (
    "BFCL v4's own rows (evenly spaced, bfcl.rows per category) and its AST checker (bfcl-eval), each file asked "
    "through llama-server with OpenAI tools. irrelevance offers functions that do not fit: right there is no call. "
    "Intervals are 95% bootstrap intervals; differences are paired over the same rows."
)


def plot_losses(history: dict):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.plot([r["step"] for r in history["train"]], [r["loss"] for r in history["train"]], label="train loss", lw=1)
    axes.plot([r["step"] for r in history["eval"]], [r["val_loss"] for r in history["eval"]], "o-", label="val loss")
    axes.set(xlabel="optimizer step", ylabel="loss (assistant tokens)", title="Training")
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


def plot_alignment(history: dict):
    """DPO's implicit rewards of the chosen and rejected answers, and their margin, per step (val as points)."""
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    for key, label in (("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"), ("rewards/margins", "margin")):
        axes.plot([r["step"] for r in history["train"]], [r.get(key) for r in history["train"]], label=label, lw=1)
    axes.plot(
        [r["step"] for r in history["eval"]],
        [r.get("rewards/margins") for r in history["eval"]],
        "o",
        label="val margin",
    )
    axes.set(xlabel="optimizer step", ylabel="beta x log(policy / SFT)", title="Alignment (DPO)")
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


def plot_reinforcement(history: dict):
    """GRPO's mean reward per step, each reward function's mean, and the KL to the starting model (right axis)."""
    from matplotlib import pyplot as plt

    rows = history["train"]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    keys = ["reward"] + sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    for key in keys:
        label = "total reward" if key == "reward" else key.removeprefix("rewards/").removesuffix("/mean")
        axes.plot([r["step"] for r in rows], [r.get(key) for r in rows], label=label, lw=1.5 if key == "reward" else 1)
    kl = axes.twinx()
    kl.plot([r["step"] for r in rows], [r.get("kl") for r in rows], "k:", label="KL", lw=1)
    kl.set_ylabel("KL to the starting model")
    axes.set(xlabel="optimizer step", ylabel="mean reward", title="Reinforcement (GRPO)")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return figure


def model_order(metrics: dict, sizes: dict) -> list[str]:
    """base, sft (when align or reinforce ran), dpo (when both ran), tuned, then the GGUF files as the gguf step made
    them (JSON keys are sorted)."""
    before = [name for name in ("sft", "dpo") if name in metrics["models"]]
    return ["base", *before, "tuned", *(f"gguf-{n}" for n in sizes["order"])]


def plot_scores(metrics: dict, names: list[str]):
    from matplotlib import pyplot as plt

    columns = {"exact match": lambda m: m["exact_match"], "ROUGE-L": lambda m: m["rouge_l"]}
    if metrics["tool_call_rows"]:
        columns["tool-call exact match"] = lambda m: m["tool_calls"]["exact_match"]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(columns)
    for i, (label, get) in enumerate(columns.items()):
        axes.bar(
            [x + i * width for x in range(len(names))], [get(metrics["models"][n]) for n in names], width, label=label
        )
    axes.set_xticks([x + width * (len(columns) - 1) / 2 for x in range(len(names))], names)
    axes.set(ylabel="points (0-100)", ylim=(0, 100), title="Held-out test split")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=len(columns), frameon=False)  # clear of the bars
    axes.grid(axis="y", alpha=0.3)
    return figure


def save(figure, path: Path) -> str:
    """Write the PNG and return it as a data URI for the self-contained HTML."""
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    path.write_bytes(buffer.getvalue())
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def inside(file: dict) -> str | None:
    """A GGUF's real tensor types: the name on the file is not always what is inside."""
    if not file.get("weight_share"):
        return None
    shares = ", ".join(f"{kind} {share:.0%}" for kind, share in file["weight_share"].items() if share >= 0.005)
    notes = [f"{file['fallback_tensors']} fell back"] if file["fallback_tensors"] else []
    notes += ["imatrix"] if file.get("imatrix") else []
    return "; ".join([shares, *notes])


def span(interval: list[float] | None) -> str | None:
    return f"{interval[0]:g} to {interval[1]:g}" if interval else None


def alignment_rows(aligned: dict, change: dict | None) -> list[list]:
    """The align step's summary and what it changed on the held-out pairs (evaluate's `alignment`) as (name, value)
    rows; empty when it did not run."""
    if not aligned.get("enabled"):
        return []
    first, last, val = aligned["first"], aligned["last"], aligned["val_end"] or {}
    held_out = (
        {
            "held-out pairs, DPO minus SFT: preference accuracy": f"{change['accuracy']:+g} points "
            f"({span(change['ci95']['accuracy'])})",
            "held-out pairs, DPO minus SFT: margin": f"{change['margin']:+.3f} nats ({span(change['ci95']['margin'])}), "
            f"rose on {change['margins_rose']} of {change['pairs']}",
        }
        if change
        else {}
    )
    return [
        [k, v]
        for k, v in {
            "loss": f"{' + '.join(aligned['loss'])}, beta {aligned['beta']:g}",
            "reference": aligned["reference"],
            "pairs (train / val)": f"{aligned['pairs']['train']} / {aligned['pairs']['val']}",
            "trainable parameters": f"{aligned['parameters']['trainable']:,}",
            "steps": aligned["steps"],
            "first / last train loss": f"{first.get('loss', 0):.4f} / {last.get('loss', 0):.4f}",
            "first / last train margin": f"{first.get('rewards/margins', 0):.3f} / {last.get('rewards/margins', 0):.3f}",
            "val margin / reward accuracy at the end": f"{val.get('rewards/margins', 0):.3f} / "
            f"{100 * val.get('rewards/accuracies', 0):.0f}%",
            "wall time": f"{aligned['wall_seconds']:.0f} s",
            "peak memory": f"{aligned['peak_memory_mb']['rss']:.0f} MB",
            **held_out,
        }.items()
    ]


SWEEP_NOTE = (
    "Each value is its own run of train, merge, align, gguf, evaluate and gate on the same data and test rows. "
    "Minus the params.yaml run: the same test rows scored by both tuned models, resampled together; an interval "
    "that holds 0 is a difference the test split cannot tell from noise."
)


def headline_rows(files: list[Path]) -> tuple[list, list]:
    """The headline numbers (tunemake.headline) under the names `dvc exp show` gives them, with the file each is in."""
    rows = [
        [name, value, str(path)]
        for path in files
        if path.is_file()
        for name, value in json.loads(path.read_text()).items()
    ]
    return ["dvc exp show column", "value", "file"], rows


def sweep_title(swept: dict) -> str:
    return f"Sweep: {swept['key']} (tuned {swept['metric']}, points)"


def sweep_rows(swept: dict) -> tuple[list, list]:
    """One row per point, under the headline names (tunemake.headline) that `dvc exp show` and sweep.json use."""
    key, reference, stem = swept["key"], swept["reference"], score_name(swept["metric"])
    header = [key, f"{stem}_tuned", "95% interval", "minus the params.yaml run", f"{stem}_shipped", "trainable_params"]
    header += ["best_val_loss", "train_minutes", "verdict", "folder"]
    rows = [
        [
            f"{r[key]} (params.yaml)" if r["run"] == reference else r[key],
            r.get(f"{stem}_tuned"),
            span(
                interval
                if None not in (interval := [r.get(f"{stem}_tuned_low"), r.get(f"{stem}_tuned_high")])
                else None
            ),
            "-" if r["run"] == reference else span(r["tuned_minus_reference_ci95"]),
            r.get(f"{stem}_shipped"),
            f"{r['trainable_params']:,}",
            r.get("best_val_loss"),
            r.get("train_minutes"),
            r["verdict"],
            r["run"],
        ]
        for r in swept["rows"]
    ]
    return header, rows


def bfcl_rows(bfcl: dict) -> list[list]:
    """Per BFCL category: each model's correct/total with its interval, and tuned and shipped minus base, paired."""
    rows = []
    for category, scores in (bfcl.get("categories") or {}).items():
        models, change = scores["models"], scores["minus_base"]
        rows.append(
            [category]
            + [
                f"{models[m]['correct']}/{models[m]['total']} {span(models[m]['ci95'])}"
                for m in ("base", "tuned", "shipped")
            ]
            + [f"{change[m]['value']:+g} {span(change[m]['ci95'])}" for m in ("tuned", "shipped")]
        )
    return rows


def reinforcement_rows(reinforced: dict, change: dict | None) -> list[list]:
    """The reinforce step's summary and what it changed on the test rows (evaluate's `reinforcement`) as (name,
    value) rows; empty when it did not run."""
    if not reinforced.get("enabled"):
        return []
    first, last = reinforced["first"], reinforced["last"]
    value = lambda v: "n/a" if v is None else f"{v:.3g}"  # noqa: E731  (None: no row of that kind in the batch)
    held_out = {
        f"test rows, GRPO minus {change['from']}: {name}": f"{c['change']:+g} points ({span(c['ci95'])}), "
        f"{c['rows']} rows"
        for name, c in (change or {}).items()
        if name != "from"
    }
    rewards = {
        f"first / last mean reward: {key.removeprefix('rewards/').removesuffix('/mean')}": f"{value(first.get(key))} / "
        f"{value(last.get(key))}"
        for key in first
        if key.startswith("rewards/") and key.endswith("/mean")
    }
    return [
        [k, v]
        for k, v in {
            "started from": reinforced["start"],
            "loss": f"{reinforced['loss_type']}, beta {reinforced['beta']:g}, "
            f"{reinforced['num_generations']} completions per prompt, by {reinforced['generation']}",
            "prompts": ", ".join(f"{n} {kind}" for kind, n in reinforced["prompts"].items()),
            "steps": reinforced["steps"],
            "first / last mean reward": f"{value(first.get('reward'))} / {value(last.get('reward'))}",
            **rewards,
            "KL at the end": value(last.get("kl")),
            "completion length at the end (tokens)": value(last.get("completions/mean_length")),
            "wall time": f"{reinforced['wall_seconds']:.0f} s",
            "peak memory": f"{reinforced['peak_memory_mb']['rss']:.0f} MB",
            **held_out,
        }.items()
    ]


def tables(
    stats: dict,
    summary: dict,
    aligned: dict,
    metrics: dict,
    sizes: dict,
    result: dict,
    bfcl: dict | None = None,
    reinforced: dict | None = None,
) -> dict[str, tuple[list, list]]:
    """Each table as (headers, rows), shared by the HTML and the Markdown."""
    quality, speed = [], []
    for name in model_order(metrics, sizes):
        m = metrics["models"][name]
        tool = m.get("tool_calls", {})
        quality.append(
            [
                name,
                m.get("loss"),
                m.get("perplexity"),
                m["exact_match"],
                m["rouge_l"],
                tool.get("json_valid"),
                tool.get("function_name"),
                tool.get("arguments"),
                tool.get("exact_match"),
                span(m.get("ci95", {}).get(result["metric"])),
                m.get("degenerate_rate"),
                m.get("no_call"),
                m.get("preference", {}).get("accuracy"),
                span(m.get("preference", {}).get("ci95", {}).get("accuracy")),
            ]
        )
        s = m["speed"]
        file = sizes["files"].get(name[5:], {}) if name.startswith("gguf-") else {}
        speed.append(
            [
                name,
                file.get("megabytes"),
                file.get("bits_per_weight"),
                inside(file),
                s.get("time_to_first_token_s"),
                s.get("prompt_tokens_per_second"),
                s.get("generation_tokens_per_second"),
                s.get("seconds_per_answer"),
                s["peak_rss_mb"],
            ]
        )
    general = []
    for name in model_order(metrics, sizes):
        g = metrics["models"][name].get("general")
        if not g:  # eval.suite_models: shipped leaves the other GGUFs out
            continue
        general.append(
            [
                name,
                g.get("degenerate_rate"),
                span(g["ci95"].get("degenerate_rate")),
                ", ".join(f"{k} {v:g}" for k, v in g.get("degenerate_by_system", {}).items()),
                g.get("unfinished_rate"),
                g.get("checkable"),
                span(g["ci95"].get("checkable")),
                g.get("drift", 0.0 if name == "base" else None),
                span(g["ci95"].get("drift")),
            ]
        )
    data = [
        [
            source,
            info["lines"],
            info["kept"],
            sum(info["rejected"].values()),
            ", ".join(f"{k}: {v}" for k, v in {**info["rejected"]}.items()) or "-",
        ]
        for source, info in stats["sources"].items()
    ]
    training = [
        [k, v]
        for k, v in {
            "method": summary["method"],
            "trainable parameters": f"{summary['parameters']['trainable']:,} "
            f"({100 * summary['parameters']['trainable_share']:.2f}%)",
            "steps": summary["steps"],
            "effective batch": summary["batch"]["effective"],
            "tokens seen": summary["tokens_seen"],
            "first / last train loss": f"{summary['first_loss']:.4f} / {summary['last_loss']:.4f}",
            "best val loss": summary["best"] and f"{summary['best']['val_loss']:.4f} at step {summary['best']['step']}",
            "wall time": f"{summary['wall_seconds']:.0f} s",
            "peak memory": f"{summary['peak_memory_mb']['rss']:.0f} MB",
            "device": summary["device"],
            "precision": summary["precision"],
        }.items()
    ]
    return {
        "quality": (
            [
                "model",
                "loss",
                "perplexity",
                "exact match",
                "ROUGE-L",
                "JSON valid",
                "function name",
                "arguments",
                "tool-call exact match",
                f"{result['metric']}: 95% interval",
                "degenerate answers (%)",
                "no call where none fits (%)",
                "prefers the chosen answer (%)",
                "95% interval",
            ],
            quality,
        ),
        "speed": (
            [
                "model",
                "size (MB)",
                "bits/weight",
                "tensor types (share of weights; fell back)",
                "first token (s)",
                "prompt tok/s",
                "generation tok/s",
                "s / answer",
                "peak RSS (MB)",
            ],
            speed,
        ),
        "general": (
            [
                "model",
                "degenerate (%)",
                "95% interval",
                "degenerate (%) by system turn",
                "unfinished (%)",
                "checkable right (%)",
                "95% interval",
                "drift (nats/token)",
                "95% interval",
            ],
            general,
        ),
        "bfcl": (
            ["BFCL category", "base", "tuned", "shipped", "tuned - base (points)", "shipped - base (points)"],
            bfcl_rows(bfcl or {}),
        ),
        "data": (["source", "lines", "kept", "rejected", "reasons"], data),
        "training": (["", ""], training),
        "alignment": (["", ""], alignment_rows(aligned, metrics.get("alignment"))),
        "reinforcement": (["", ""], reinforcement_rows(reinforced or {}, metrics.get("reinforcement"))),
        "gate": (
            ["check", "value", "95% interval", "limit", "status"],
            [
                [c["check"] + (f", {c['scope']}" if c.get("scope") else ""), c["value"], span(c["ci95"])]
                + [c["limit"], c["status"]]
                for c in result["checks"]
            ],
        ),
    }


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
    """index.html and report.md, each from its template (tunemake/templates/) and one context: the two say the same.
    The HTML page carries its plots inline; the Markdown one links the PNGs beside it."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader("tunemake"), autoescape=select_autoescape())
    tables = context["tables"]

    def table(name: str) -> str:
        return tabulate(tables[name][1], headers=tables[name][0], tablefmt="github", missingval="-")

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
    samples = read_jsonl(evaluation / "samples.jsonl")[:SAMPLES]
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
