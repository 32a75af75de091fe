"""The report's plots (matplotlib, PNG): training losses, alignment and reinforcement curves, held-out scores."""

from __future__ import annotations

import base64
import io
from pathlib import Path


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
