"""show-tokens: print one tokenized row token by token, marking what is trained (T) and what is only read (.)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunemake.data.chat import fast_tokenizer
from tunemake.errors import StepError
from tunemake.training.loss import IGNORE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("results/tokenized"), help="the tokenize step's output")
    parser.add_argument("--base", type=Path, default=Path("results/base"), help="the base step's output")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--row", type=int, default=0)


def main(args: argparse.Namespace) -> None:
    print(show(args.data, args.base, args.split, args.row))


def show(tokenized: Path, base: Path, split: str, row: int) -> str:
    from datasets import load_from_disk

    dataset = load_from_disk(str(tokenized / "dataset"))[split]
    if not 0 <= row < len(dataset):
        raise StepError(f"split {split!r} has {len(dataset)} rows; --row must be 0..{len(dataset) - 1}")
    tokenizer = fast_tokenizer(base)
    example = dataset[row]
    trained = sum(1 for x in example["labels"] if x != IGNORE)
    lines = [
        f"{split}[{row}] id={example['id']}: {len(example['input_ids'])} tokens, {trained} trained (T) / masked (.)"
    ]
    for i, (token, label) in enumerate(zip(example["input_ids"], example["labels"])):
        lines.append(f"{i:5d} {'T' if label != IGNORE else '.'} {token:7d} {tokenizer.decode([token])!r}")
    return "\n".join(lines)
