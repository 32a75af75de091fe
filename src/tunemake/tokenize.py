"""tokenize: canonical splits -> a `datasets` Arrow DatasetDict with labels only on assistant tokens.

Each conversation is rendered once with the base model's chat template and tokenized with character offsets;
tokens inside assistant turns (end-of-turn token included) keep their id as label, all others get -100, so the
loss never trains on prompts, system text or tool specs. Rows longer than tokenize.max_length follow
tokenize.overlong: drop, truncate (rows left with no trainable token are dropped) or error. All counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tunemake.chat import Renderer
from tunemake.errors import StepError
from tunemake.jsonl import atomic_dir, read_jsonl, write_json
from tunemake.params import TokenizeParams
from tunemake.split import SPLITS

log = logging.getLogger(__name__)

IGNORE = -100
LENGTH_BINS = [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, float("inf")]


def load_tokenizer(base: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if not tokenizer.is_fast:
        raise StepError(f"{base}: tokenize needs a fast tokenizer (tokenizer.json) to map assistant text to tokens")
    return tokenizer


def encode(renderer: Renderer, record: dict) -> tuple[list[int], list[int]]:
    messages, tools = renderer.prepare(record["messages"], record.get("tools", []))
    text, spans = renderer.assistant_spans(messages, tools)
    encoded = renderer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token, (start, _end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        trained = any(lo <= start < hi for lo, hi in spans)
        labels.append(token if trained else IGNORE)
    return encoded["input_ids"], labels


def run(params: TokenizeParams, base: Path, data: Path, out: Path) -> dict:
    from datasets import Dataset, DatasetDict

    renderer = Renderer(load_tokenizer(base))
    stats: dict = {
        "max_length": params.max_length,
        "overlong": params.overlong,
        "tool_format": "native" if renderer.support.native else "fallback (<tool_call> JSON in text, see tunemake.chat)",
        "splits": {},
    }
    splits = {}
    for name in SPLITS:
        columns: dict[str, list] = {"id": [], "input_ids": [], "labels": []}
        counts: Counter = Counter()
        lengths = []
        for record in tqdm(read_jsonl(data / f"{name}.jsonl"), desc=f"tokenize {name}", unit="row", mininterval=2):
            try:
                ids, labels = encode(renderer, record)
            except ValueError as err:
                raise StepError(f"{data / name}.jsonl row {record['id']}: {err}") from None
            if len(ids) > params.max_length:
                counts["overlong"] += 1
                if params.overlong == "error":
                    raise StepError(
                        f"row {record['id']} ({record['meta']['file']}:{record['meta']['line']}) has {len(ids)} tokens, "
                        f"over tokenize.max_length={params.max_length}. Raise max_length or set tokenize.overlong to drop or truncate."
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
            lengths.append(len(ids))
        tokens = int(sum(lengths))
        trainable = int(sum(sum(1 for x in row if x != IGNORE) for row in columns["labels"]))
        histogram, _ = np.histogram(lengths, bins=LENGTH_BINS)
        stats["splits"][name] = {
            "rows": len(lengths),
            "tokens": tokens,
            "trainable_tokens": trainable,
            "trainable_fraction": round(trainable / tokens, 4) if tokens else 0.0,
            "max_tokens": max(lengths, default=0),
            "length_tokens": {"bins": [str(b) for b in LENGTH_BINS], "counts": histogram.tolist()},
            **counts,
        }
        if trainable == 0:
            raise StepError(
                f"split {name!r} has no trainable (assistant) tokens after tokenizing ({len(lengths)} rows kept, {dict(counts)}). "
                "Check that rows have assistant answers and that tokenize.max_length leaves room for them; "
                "inspect a row with: tunemake show-tokens --data <tokenized dir> --split " + name
            )
        splits[name] = Dataset.from_dict(columns)

    with atomic_dir(out) as tmp:
        DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "token_stats.json", stats)
    summary = ", ".join(f"{n} {s['rows']} rows/{s['tokens']} tok ({s['trainable_fraction']:.0%} trained)" for n, s in stats["splits"].items())
    log.info("tokenize: %s; tools: %s", summary, stats["tool_format"])
    return stats


def show(tokenized: Path, base: Path, split: str, row: int) -> str:
    """One row token by token with its label: what the model is trained on and what it only reads."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(tokenized / "dataset"))[split]
    if not 0 <= row < len(dataset):
        raise StepError(f"split {split!r} has {len(dataset)} rows; --row must be 0..{len(dataset) - 1}")
    tokenizer = load_tokenizer(base)
    example = dataset[row]
    lines = [f"{split}[{row}] id={example['id']}: {len(example['input_ids'])} tokens, "
             f"{sum(1 for x in example['labels'] if x != IGNORE)} trained (T) / masked (.)"]
    for i, (token, label) in enumerate(zip(example["input_ids"], example["labels"])):
        lines.append(f"{i:5d} {'T' if label != IGNORE else '.'} {token:7d} {tokenizer.decode([token])!r}")
    return "\n".join(lines)
