"""pairs: preference sources -> validated, de-duplicated train/val/test preference pairs for the align step.

Read with prepare's own code and settings (dedup, strict, the rejects with file:line and the fix). A pair whose prompt
is a prepared row's prompt (every turn before its answer, tools included) goes to that row's split, so a prompt held
out from SFT is never trained on by DPO either; the other pairs are split as prepare splits rows. A step of its own,
after prepare: editing the pairs never re-runs prepare, tokenize or train.

Output: train/val/test.jsonl ({id, prompt, chosen, rejected, tools?, meta}), rejects.jsonl, stats.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Protocol

from tunemake.data.jsonl import read_jsonl
from tunemake.data.sources import read_sources, write_splits
from tunemake.data.split import SPLITS, split_records
from tunemake.params import load as load_params
from tunemake.params.pairs import PairsParams
from tunemake.params.prepare import PrepareParams

log = logging.getLogger(__name__)


class Sections(Protocol):
    """What this step reads of params.yaml: the pairs and prepare sections (tunemake.params.load)."""

    pairs: PairsParams
    prepare: PrepareParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="the prepare step's output (its splits)")
    parser.add_argument("--out", type=Path, required=True, help="train/val/test.jsonl, rejects.jsonl, stats.json")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, prepare=PrepareParams, pairs=PairsParams), args.data, args.out)


def prompt_key(messages: list[dict], tools: list[dict] | None) -> str:
    return json.dumps([messages, tools or []], sort_keys=True)


def run(params: Sections, data: Path, out: Path) -> dict:
    pairs, rejects, stats = read_sources(params.pairs.sources, params.prepare)
    row_split = {}  # a prepared row's prompt -> its split
    for name in SPLITS:
        for row in read_jsonl(data / f"{name}.jsonl"):
            last = max(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
            row_split[prompt_key(row["messages"][:last], row.get("tools"))] = name
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    rest = []
    for pair in pairs:
        name = row_split.get(prompt_key(pair["prompt"], pair.get("tools")))
        pair["meta"]["row_split"] = name is not None
        (splits[name] if name else rest).append(pair)
    if rest:
        prepare = params.prepare
        for name, rows in split_records(
            rest, prepare.split.model_dump(), prepare.seed, prepare.stratify_by, prepare.group_by
        ).items():
            splits[name] += rows
    stats.update(
        pairs={"kept": len(pairs), "rejected": len(rejects)},
        rejects=dict(Counter(r["reason"] for r in rejects)),
        splits={
            name: {"pairs": len(rows), "by_source": dict(Counter(r["meta"]["source"] for r in rows))}
            for name, rows in splits.items()
        },
        following_a_row=len(pairs) - len(rest),
    )
    write_splits(out, splits, rejects, stats)
    log.info(
        "pairs: kept %d (%s; %d in the split of the row with their prompt), rejected %d %s",
        len(pairs),
        ", ".join(f"{n} {len(splits[n])}" for n in SPLITS),
        len(pairs) - len(rest),
        len(rejects),
        stats["rejects"],
    )
    return stats
