"""The report's tables, each as (headers, rows), shared by its HTML and its Markdown."""

from __future__ import annotations

import json
from pathlib import Path

from tunemake.evaluation.headline import score_name

BFCL_NOTE = (
    "BFCL v4's own rows (evenly spaced, bfcl.rows per category) and its AST checker (bfcl-eval), each file asked "
    "through llama-server with OpenAI tools. irrelevance offers functions that do not fit: right there is no call. "
    "Intervals are 95% bootstrap intervals; differences are paired over the same rows."
)


def model_order(metrics: dict, sizes: dict) -> list[str]:
    """base, sft (when align or reinforce ran), dpo (when both ran), tuned, then the GGUF files as the gguf step made
    them (JSON keys are sorted)."""
    before = [name for name in ("sft", "dpo") if name in metrics["models"]]
    return ["base", *before, "tuned", *(f"gguf-{n}" for n in sizes["order"])]


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
    """The headline numbers (tunemake.evaluation.headline) under the names `dvc exp show` gives them, with the file each
    is in."""
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
    """One row per point, under the headline names (tunemake.evaluation.headline) that `dvc exp show` and sweep.json
    use."""
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
