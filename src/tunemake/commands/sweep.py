"""sweep: one parameter at several values, each value its own train -> evaluate -> gate run, compared in one table.

    snakemake --profile local --config sweep=train.lora.r:4,8,16,32,64
    snakemake --profile local --config sweep=train.method:lora,qlora,full

Each value is a point: the steps after tokenize (train, merge, align, reinforce, gguf, evaluate, bfcl, gate) run
again under
results/sweep/KEY=VALUE/ with `--set KEY=VALUE`, sharing the base model, the data, the tokens and the regression
suite with the params.yaml run; a value equal to params.yaml's is that run, not a copy. The rules are the pipeline's
own (a `{point}` wildcard in their paths), so on a cluster each point is a job of its own with the profile's
resources for its rule, and the points run side by side. This step reads every point into results/sweep/KEY/:
`sweep.json`, one row per value (each point's headline under the names `dvc exp show` lists,
tunemake.evaluation.headline: the verdict, the gate's metric for the tuned and the shipped model with the lower ends of
their 95% intervals, trainable parameters, best validation loss, training minutes, ...; plus the tuned score's upper
interval end and its difference from the params.yaml run paired over the test rows), and `sweep.png`; the report shows
both. Sections every point shares (data, tokens, the base) cannot be swept here: `dvc exp run --queue -S` runs the whole
pipeline per value.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunemake.data.jsonl import atomic_dir, dotted, read_jsonl, write_json
from tunemake.evaluation import headline
from tunemake.evaluation.stats import paired_interval
from tunemake.params import ParamsError, with_value
from tunemake.params.schema import load as load_params

log = logging.getLogger("tunemake")

# The sections whose steps run once per point; what comes before them is shared by all points.
SWEPT_SECTIONS = ("train", "merge", "align", "reinforce", "gguf", "eval", "bfcl", "gate")


@dataclass
class Sweep:
    """`--config sweep=KEY:V1,V2,...` read against params.yaml. Without a sweep, the one point is params.yaml's run."""

    key: str = ""
    values: list[Any] = field(default_factory=list)
    default: Any = None  # params.yaml's value of key

    def point(self, value: Any) -> str:
        """The path part of a value's run, inserted after results/: '' for params.yaml's own value."""
        return "" if value == self.default else f"sweep/{self.key}={text(value)}/"

    @property
    def points(self) -> list[str]:
        return list(dict.fromkeys([""] + [self.point(v) for v in self.values]))

    def value(self, point: str) -> Any:
        if point not in self.points:
            raise ParamsError(f"no sweep point {point!r}: this run sweeps {self.key or 'nothing'}")
        return next((v for v in self.values if self.point(v) == point), self.default)

    def set_args(self, point: str) -> str:
        """The `--set` a point's commands carry (a leading space, so params.yaml's own commands stay unchanged)."""
        return f" --set {self.key}={text(self.value(point))}" if point else ""

    def section(self, config: dict, point: str, name: str) -> Any:
        """params.yaml's section `name` as the point sees it: a Snakemake rule's params, so a point re-runs when its
        value or anything else in the section changes."""
        return with_value(config, self.key, self.value(point))[name] if point else config[name]

    def outputs(self) -> list[str]:
        """This step's output, which the report reads: none without a sweep."""
        return [f"results/sweep/{self.key}"] if self.key else []

    def run_args(self) -> str:
        """This step's `--run VALUE DIR` pairs, params.yaml's run first."""
        return " ".join(f"--run {text(self.value(p))} results/{p}".rstrip("/") for p in self.points)


def text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parse(spec: str | None, params_file: str | Path = "params.yaml") -> Sweep:
    """The sweep in `spec` ('KEY:V1,V2,...'), each value validated as params.yaml with it set; errors name the fix."""
    if not spec:
        return Sweep()
    key, _, listed = str(spec).partition(":")
    if not key or not listed:
        raise ParamsError(f"--config sweep={spec}: write sweep=KEY:VALUE,VALUE..., e.g. sweep=train.lora.r:4,8,16")
    if key.split(".")[0] not in SWEPT_SECTIONS:
        raise ParamsError(
            f"--config sweep={spec}: {key} is read before training, so every point would share it; a sweep runs "
            f"{', '.join(SWEPT_SECTIONS)} once per value. Sweep it with: dvc exp run --queue -S '{key}=...'"
        )
    values = [yaml.safe_load(v) for v in listed.split(",")]
    for value in values:
        if not re.fullmatch(r"[\w.+-]+", text(value)):
            raise ParamsError(
                f"--config sweep={spec}: {text(value)!r} cannot name a folder; use letters, digits, . + -"
            )
        load_params(params_file, [f"{key}={text(value)}"])  # a misspelt key or a bad value names itself
    default = dotted(load_params(params_file).model_dump(mode="json"), key)
    return Sweep(key, list(dict.fromkeys(values)), default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, help="the swept parameter, e.g. train.lora.r")
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        required=True,
        metavar=("VALUE", "DIR"),
        help="a value and the folder holding its train/, eval/ and gate.json (params.yaml's run first)",
    )
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    metric = load_params(args.params, args.set).gate.metric
    runs = [(yaml.safe_load(value), Path(folder)) for value, folder in args.run]
    run(args.key, runs, metric, args.out)


def run(key: str, runs: list[tuple[Any, Path]], metric: str, out: Path) -> list[dict]:
    reference = rows_by_id(runs[0][1])
    table = [point_row(key, value, folder, metric, reference) for value, folder in runs]
    table.sort(key=lambda r: (isinstance(r[key], str), r[key]))
    stem = headline.score_name(metric)
    with atomic_dir(out) as tmp:
        write_json(tmp / "sweep.json", {"key": key, "metric": metric, "reference": str(runs[0][1]), "rows": table})
        plot(table, key, stem, tmp / "sweep.png")
    for row in table:
        log.info(
            "sweep %s=%s: %s %s (95%% interval %s to %s), %s trainable, %s",
            key,
            text(row[key]),
            f"{stem}_tuned",
            row.get(f"{stem}_tuned"),
            row.get(f"{stem}_tuned_low"),
            row.get(f"{stem}_tuned_high"),
            row.get("trainable_params"),
            row["verdict"],
        )
    return table


def rows_by_id(folder: Path) -> dict[str, dict]:
    return {row["id"]: row["scores"]["tuned"] for row in read_jsonl(folder / "eval" / "samples.jsonl")}


def point_row(key: str, value: Any, folder: Path, metric: str, reference: dict[str, dict]) -> dict:
    """The point's headlines (tunemake.evaluation.headline: train's, then the gate's), under the names `dvc exp show`
    lists, plus the upper end of the tuned score's interval and its difference from the params.yaml run."""
    trained = json.loads((folder / "train" / headline.FILE).read_text())
    gated = json.loads((folder / headline.FILE).read_text())
    tuned = json.loads((folder / "eval" / "metrics.json").read_text())["models"]["tuned"]
    high = (tuned.get("ci95", {}).get(metric) or [None, None])[1]
    mine = rows_by_id(folder)
    paired = [(dotted(mine[i], metric), dotted(reference[i], metric)) for i in reference if i in mine]
    paired = [(a, b) for a, b in paired if a is not None and b is not None]
    stem = headline.score_name(metric)
    return {
        key: value,
        "run": str(folder),
        **trained,
        **gated,
        f"{stem}_tuned_high": high if high is None else round(high, 2),
        # the same test rows scored by both models: tells a real difference from the noise of a few rows
        "tuned_minus_reference_ci95": paired_interval([a for a, _ in paired], [b for _, b in paired]),
    }


def plot(rows: list[dict], key: str, stem: str, path: Path) -> None:
    """The tuned model's score with its 95% interval (down to `_low`, up to `_high` where the row has it: sweep.json
    does, `dvc exp show`'s headline only the lower end) and the trainable parameters against the swept value; ranks
    and other positive numbers on a log-2 axis, names (methods) as categories. `stem` is tunemake.evaluation.headline's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [r[key] for r in rows]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    x = values if numeric else list(range(len(values)))
    scores = [r[f"{stem}_tuned"] for r in rows]
    low = [s - r[f"{stem}_tuned_low"] if r.get(f"{stem}_tuned_low") is not None else 0 for s, r in zip(scores, rows)]
    high = [r[f"{stem}_tuned_high"] - s if r.get(f"{stem}_tuned_high") is not None else 0 for s, r in zip(scores, rows)]
    both = any(r.get(f"{stem}_tuned_high") is not None for r in rows)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.errorbar(x, scores, yerr=[low, high], marker="o", capsize=4)
    title = "held-out score, 95% interval" if both else "held-out score, lower 95% bound"
    left.set(xlabel=key, ylabel=f"{stem}_tuned", title=title)
    right.plot(x, [r["trainable_params"] for r in rows], marker="o", color="tab:orange")
    right.set(xlabel=key, ylabel="trainable_params", title="trainable parameters")
    for axis in (left, right):
        if numeric and all(v > 0 for v in values):
            axis.set_xscale("log", base=2)
        axis.set_xticks(x, [text(v) for v in values])
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
