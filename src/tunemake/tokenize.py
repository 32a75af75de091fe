"""tokenize: canonical splits -> a `datasets` Arrow DatasetDict with labels only on assistant tokens.

Each conversation is rendered once with the base model's chat template and tokenized with character offsets;
tokens inside assistant turns (end-of-turn token included) keep their id as label, all others get -100, so the
loss never trains on prompts, system text or tool specs. Rows longer than tokenize.max_length follow
tokenize.overlong: drop, truncate (rows left with no trainable token are dropped) or error. All counted.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tunemake.chat import Renderer, fast_tokenizer
from tunemake.errors import StepError
from tunemake.jsonl import atomic_dir, read_jsonl, write_json
from tunemake.loss import IGNORE
from tunemake.params import TokenizeParams
from tunemake.params import load as load_params
from tunemake.split import SPLITS

log = logging.getLogger(__name__)

LENGTH_BINS = [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, float("inf")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output (tokenizer and template)")
    parser.add_argument("--data", type=Path, required=True, help="the prepare step's output")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params).tokenize, args.base, args.data, args.out)


def run(params: TokenizeParams, base: Path, data: Path, out: Path) -> dict:
    from datasets import Dataset, DatasetDict

    renderer = Renderer(fast_tokenizer(base))
    stats: dict = {
        "max_length": params.max_length,
        "overlong": params.overlong,
        "tool_format": "native"
        if renderer.support.native
        else "fallback (<tool_call> JSON in text, see tunemake.chat)",
        "splits": {},
    }
    splits = {}
    for name in SPLITS:
        columns, counts = tokenize_split(renderer, data / f"{name}.jsonl", params)
        stats["splits"][name] = split_stats(columns, counts)
        if stats["splits"][name]["trainable_tokens"] == 0:
            raise StepError(
                f"split {name!r} has no trainable (assistant) tokens after tokenizing ({len(columns['id'])} rows kept, "
                f"{dict(counts)}). Check that rows have assistant answers and that tokenize.max_length leaves room for "
                f"them; inspect a row with: tunemake show-tokens --data <tokenized dir> --split {name}"
            )
        splits[name] = Dataset.from_dict(columns)
    with atomic_dir(out) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "token_stats.json", stats)
    summary = ", ".join(
        f"{n} {s['rows']} rows/{s['tokens']} tok ({s['trainable_fraction']:.0%} trained)"
        for n, s in stats["splits"].items()
    )
    log.info("tokenize: %s; tools: %s", summary, stats["tool_format"])
    return stats


def encode(renderer: Renderer, record: dict) -> tuple[list[int], list[int]]:
    messages, tools = renderer.prepare(record["messages"], record.get("tools", []))
    text, spans = renderer.assistant_spans(messages, tools)
    encoded = renderer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token, (start, _end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        trained = any(lo <= start < hi for lo, hi in spans)
        labels.append(token if trained else IGNORE)
    return encoded["input_ids"], labels


def tokenize_split(renderer: Renderer, path: Path, params: TokenizeParams) -> tuple[dict[str, list], Counter]:
    """The split's columns (id, input_ids, labels) and the count of each overlong or untrainable row's fate."""
    columns: dict[str, list] = {"id": [], "input_ids": [], "labels": []}
    counts: Counter = Counter()
    for record in tqdm(read_jsonl(path), desc=f"tokenize {path.stem}", unit="row", mininterval=2):
        try:
            ids, labels = encode(renderer, record)
        except ValueError as err:
            raise StepError(f"{path} row {record['id']}: {err}") from None
        if len(ids) > params.max_length:
            counts["overlong"] += 1
            if params.overlong == "error":
                raise StepError(
                    f"row {record['id']} ({record['meta']['file']}:{record['meta']['line']}) has {len(ids)} tokens, "
                    f"over tokenize.max_length={params.max_length}. Raise max_length or set tokenize.overlong to drop "
                    "or truncate."
                )
            if params.overlong == "drop":
                counts["dropped_overlong"] += 1
                continue
            ids, labels = ids[: params.max_length], labels[: params.max_length]
            counts["truncated"] += 1
        if all(label == IGNORE for label in labels):
            counts["dropped_no_trainable_tokens"] += 1
            continue
        columns["id"].append(record["id"])
        columns["input_ids"].append(ids)
        columns["labels"].append(labels)
    return columns, counts


def split_stats(columns: dict[str, list], counts: Counter) -> dict:
    lengths = [len(ids) for ids in columns["input_ids"]]
    tokens = int(sum(lengths))
    trainable = int(sum(sum(1 for x in row if x != IGNORE) for row in columns["labels"]))
    histogram, _ = np.histogram(lengths, bins=LENGTH_BINS)
    return {
        "rows": len(lengths),
        "tokens": tokens,
        "trainable_tokens": trainable,
        "trainable_fraction": round(trainable / tokens, 4) if tokens else 0.0,
        "max_tokens": max(lengths, default=0),
        "length_tokens": {"bins": [str(b) for b in LENGTH_BINS], "counts": histogram.tolist()},
        **counts,
    }
