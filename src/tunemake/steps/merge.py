"""merge: fold the trained adapter into the float base weights and save a standalone model
(tunemake.models.weights.save_merged, which align uses too).

LoRA and QLoRA adapters are merged into results/base loaded in float32 (never into 4-bit weights), then cast to
merge.dtype. Full and freeze runs already hold full weights: they are re-saved (in merge.dtype). The output carries
the tokenizer with the training chat template and a generation config whose stop tokens are the template's
end-of-turn tokens, so every later consumer (GGUF, evaluation, serving) stops where training taught it to.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tunemake.models.weights import save_merged
from tunemake.params import load as load_params
from tunemake.params.merge import MergeParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output")
    parser.add_argument("--trained", type=Path, required=True, help="the train step's output")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, merge=MergeParams).merge, args.base, args.trained, args.out)


def run(params: MergeParams, base: Path, trained: Path, out: Path) -> dict:
    return save_merged(base, trained / "model", out, params.dtype)
