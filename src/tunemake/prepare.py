"""prepare: raw JSONL sources -> validated, normalised, de-duplicated train/val/test splits.

Outputs (one directory): train.jsonl, val.jsonl, test.jsonl in the canonical record format, stats.json, and
rejects.jsonl with every row that was not kept (file, line, reason, what to fix, and the raw line). Reading and
checking rows is tunemake.sources, shared with the pairs step.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from tunemake.errors import StepError
from tunemake.jsonl import read_jsonl
from tunemake.params import PrepareParams
from tunemake.params import load as load_params
from tunemake.sources import read_sources, write_splits
from tunemake.split import SPLITS, split_records

log = logging.getLogger(__name__)

LENGTH_BINS = [0, 256, 512, 1024, 2048, 4096, 8192, 16384, float("inf")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", type=Path, help="the replay step's output (mixed into train, see prepare.replay)")
    parser.add_argument("--out", type=Path, required=True, help="train/val/test.jsonl, stats.json, rejects.jsonl")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params).prepare, args.out, args.replay)


def run(params: PrepareParams, out: Path, replay: Path | None = None) -> dict:
    records, rejects, stats = read_sources(params.sources, params)
    splits = split_records(records, params.split.model_dump(), params.seed, params.stratify_by, params.group_by)
    for name in SPLITS:
        if not splits[name]:
            raise StepError(
                f"split {name!r} is empty ({len(records)} conversation rows kept in total). Add rows, raise "
                f"prepare.split.{name}, "
                + (
                    "or use fewer, larger groups than prepare.group_by makes."
                    if params.group_by
                    else "or lower the other ratios."
                )
            )

    splits["train"] += _replay_rows(replay, params, len(splits["train"]))
    lengths = [sum(len(m["content"]) for m in r["messages"]) + len(json.dumps(r.get("tools", []))) for r in records]
    counts, _ = np.histogram(lengths, bins=LENGTH_BINS)
    stats.update(
        rows={"kept": len(records), "rejected": len(rejects)},
        rejects=dict(Counter(r["reason"] for r in rejects)),
        splits={
            name: {"rows": len(rows), "by_source": dict(Counter(r["meta"]["source"] for r in rows))}
            for name, rows in splits.items()
        },
        length_chars={"bins": [str(b) for b in LENGTH_BINS], "counts": counts.tolist()},
    )
    write_splits(out, splits, rejects, stats)
    log.info(
        "prepare: kept %d rows (%s), rejected %d %s",
        len(records),
        ", ".join(f"{n} {len(splits[n])}" for n in SPLITS),
        len(rejects),
        dict(Counter(r["reason"] for r in rejects)),
    )
    return stats


def _replay_rows(replay: Path | None, params: PrepareParams, task_rows: int) -> list[dict]:
    """prepare.replay x task_rows of the base's own answers (tunemake.replay), drawn with the split's seed; train only:
    val and test measure the task."""
    wanted = round(params.replay * task_rows)
    if not wanted:
        return []
    if replay is None:
        raise StepError(f"prepare.replay is {params.replay:g} but no --replay folder was given; set prepare.replay: 0")
    rows = read_jsonl(replay / "rows.jsonl")
    if wanted > len(rows):
        log.warning(
            "prepare: prepare.replay asks for %d replay rows, the replay step kept %d; using all", wanted, len(rows)
        )
    picked = np.random.default_rng(params.seed).permutation(len(rows))[:wanted]
    return [rows[i] for i in sorted(picked)]
