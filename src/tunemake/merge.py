"""merge: fold the trained adapter into the float base weights and save a standalone model.

LoRA and QLoRA adapters are merged into results/base loaded in float32 (never into 4-bit weights), then cast to
merge.dtype. Full and freeze runs already hold full weights: they are re-saved (in merge.dtype). The output carries
the tokenizer with the training chat template and a generation config whose stop tokens are the template's
end-of-turn tokens, so every later consumer (GGUF, evaluation, serving) stops where training taught it to.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import torch

from tunemake.chat import stop_token_ids
from tunemake.jsonl import atomic_dir, write_json
from tunemake.params import MergeParams
from tunemake.params import load as load_params
from tunemake.weights import load

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output")
    parser.add_argument("--trained", type=Path, required=True, help="the train step's output")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params).merge, args.base, args.trained, args.out)


def run(params: MergeParams, base: Path, trained: Path, out: Path) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    weights = trained / "model"
    tokenizer = AutoTokenizer.from_pretrained(weights)
    dtype = getattr(
        torch, params.dtype if params.dtype != "auto" else json.loads((base / "manifest.json").read_text())["dtype"]
    )
    adapter = (weights / "adapter_config.json").exists()
    if adapter:
        model = load(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, weights).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32, use_safetensors=True)
    model = model.to(dtype or torch.float32)

    stops = stop_token_ids(tokenizer)
    generation = (
        GenerationConfig.from_pretrained(base) if (base / "generation_config.json").exists() else GenerationConfig()
    )
    generation.eos_token_id = stops
    generation.pad_token_id = tokenizer.pad_token_id
    model.generation_config = generation

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        manifest = {
            "from": "adapter merged into the float base" if adapter else "full weights re-saved",
            "dtype": str(model.dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in model.parameters()),
            "stop_token_ids": stops,
            "stop_tokens": tokenizer.convert_ids_to_tokens(stops),
            "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
        }
        write_json(tmp / "manifest.json", manifest)
    log.info("merge: %s -> %s (%s, stops %s)", trained, out, manifest["from"], manifest["stop_tokens"])
    return manifest
