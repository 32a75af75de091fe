"""prepare: raw JSONL sources -> validated, normalised, de-duplicated train/val/test splits.

Outputs (one directory): train.jsonl, val.jsonl, test.jsonl in the canonical record format, stats.json, and
rejects.jsonl with every row that was not kept (file, line, reason, what to fix, and the raw line). Reading and
checking rows is tunemake.data.sources, shared with the pairs step.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from tunemake.data.chat import answer_kind
from tunemake.data.jsonl import atomic_dir, read_jsonl, write_json
from tunemake.data.sources import read_rows
from tunemake.data.split import SPLITS, assign, split_key
from tunemake.errors import StepError
from tunemake.params import load as load_params
from tunemake.params.prepare import PrepareParams

log = logging.getLogger(__name__)

LENGTH_BINS = [0, 256, 512, 1024, 2048, 4096, 8192, 16384, float("inf")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", type=Path, help="the replay step's output (mixed into train, see prepare.replay)")
    parser.add_argument("--out", type=Path, required=True, help="train/val/test.jsonl, stats.json, rejects.jsonl")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, prepare=PrepareParams).prepare, args.out, args.replay)


def run(params: PrepareParams, out: Path, replay: Path | None = None) -> dict:
    """Rows stream through: each source's records go to a scratch file as they are read and each to its split's
    file once the split is known, so memory holds only what the split needs of a row (its group and stratum, the
    dedup digest), never the rows."""
    stats: dict = {"sources": {}}
    keys: list[tuple[str, str]] = []  # per kept record, in reading order: (group, stratum)
    kinds: list[str] = []  # per kept record, in reading order: chat.answer_kind
    lengths: list[int] = []
    rejects: Counter = Counter()
    with atomic_dir(out) as tmp:
        scratch = {source.label: tmp / f".source-{i}.jsonl" for i, source in enumerate(params.sources)}
        with ExitStack() as files:
            rejected = files.enter_context(open(tmp / "rejects.jsonl", "w", encoding="utf-8"))
            opened = {label: files.enter_context(open(path, "w", encoding="utf-8")) for label, path in scratch.items()}
            for row in read_rows(params.sources, params, stats):
                if "reason" in row:
                    rejects[row["reason"]] += 1
                    rejected.write(json.dumps(row, ensure_ascii=False) + "\n")
                    continue
                opened[row["meta"]["source"]].write(json.dumps(row, ensure_ascii=False) + "\n")
                keys.append(split_key(row, params.stratify_by, params.group_by))
                kinds.append(answer_kind(row))
                lengths.append(sum(len(m["content"]) for m in row["messages"]) + len(json.dumps(row.get("tools", []))))
        names = assign(keys, params.split.model_dump(), params.seed)
        _check_not_empty(names, params)
        by_source, by_kind = {name: Counter() for name in SPLITS}, {name: Counter() for name in SPLITS}
        with ExitStack() as files:
            outputs = {name: files.enter_context(open(tmp / f"{name}.jsonl", "w", encoding="utf-8")) for name in SPLITS}
            # rows were read source by source in params order; each split lists them by (source, line)
            starts = dict(zip(scratch, np.cumsum([0] + [stats["sources"][label]["kept"] for label in scratch])))
            for label in sorted(scratch):
                with open(scratch[label], encoding="utf-8") as handle:
                    for line, name, kind in zip(handle, names[starts[label] :], kinds[starts[label] :]):
                        outputs[name].write(line)
                        by_source[name][label] += 1
                        by_kind[name][kind] += 1
                scratch[label].unlink()
            for row in _replay_rows(replay, params, names.count("train")):
                outputs["train"].write(json.dumps(row, ensure_ascii=False) + "\n")
                by_source["train"][row["meta"]["source"]] += 1
                by_kind["train"][answer_kind(row)] += 1
        counts, _ = np.histogram(lengths, bins=LENGTH_BINS)
        stats.update(
            rows={"kept": len(keys), "rejected": rejects.total()},
            rejects=dict(rejects),
            splits={
                name: {
                    "rows": by_source[name].total(),
                    "by_source": dict(by_source[name]),
                    "by_kind": dict(sorted(by_kind[name].items())),  # tool_call, no_call (restraint), text
                }
                for name in SPLITS
            },
            length_chars={"bins": [str(b) for b in LENGTH_BINS], "counts": counts.tolist()},
        )
        write_json(tmp / "stats.json", stats)
    log.info(
        "prepare: kept %d rows (%s), rejected %d %s",
        len(keys),
        ", ".join(f"{n} {stats['splits'][n]['rows']}" for n in SPLITS),
        rejects.total(),
        dict(rejects),
    )
    return stats


def _check_not_empty(names: list[str], params: PrepareParams) -> None:
    for name in SPLITS:
        if name not in names:
            raise StepError(
                f"split {name!r} is empty ({len(names)} conversation rows kept in total). Add rows, raise "
                f"prepare.split.{name}, "
                + (
                    "or use fewer, larger groups than prepare.group_by makes."
                    if params.group_by
                    else "or lower the other ratios."
                )
            )


def _replay_rows(replay: Path | None, params: PrepareParams, task_rows: int) -> list[dict]:
    """prepare.replay x task_rows of the base's own answers (tunemake.steps.replay), drawn with the split's seed; train only:
    val and test measure the task."""
    wanted = round(params.replay * task_rows)
    if not wanted:
        return []
    if replay is None:
        raise StepError(f"prepare.replay is {params.replay:g} but no --replay folder was given; set prepare.replay: 0")
    stats = replay / "stats.json"
    if stats.is_file() and not json.loads(stats.read_text()).get("enabled", True):
        raise StepError(
            f"prepare.replay is {params.replay:g} but {replay} was made with replay off: run the replay step again "
            "(snakemake does; with DVC: dvc repro --force --single-item replay)"
        )
    rows = read_jsonl(replay / "rows.jsonl")
    if wanted > len(rows):
        log.warning(
            "prepare: prepare.replay asks for %d replay rows, the replay step kept %d; using all", wanted, len(rows)
        )
    picked = np.random.default_rng(params.seed).permutation(len(rows))[:wanted]
    return [rows[i] for i in sorted(picked)]
