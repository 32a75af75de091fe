"""base: pin the base model named in params.yaml; results/base holds its tokenizer, chat template, config and manifest.

The weights are not copied into results/base: DVC would cache (and push) every copy of what the hub, a local folder or
a pinned package already keeps. manifest.json pins them instead (the file hash or the resolved hub commit), and
`tunemake.models.weights.locate` finds them on any machine: the hub snapshot at that commit, the local folder, or the
GGUF dequantised once into a cache keyed by its hash ($TUNEMAKE_CACHE, default ~/.cache/tunemake). Accepted sources are
listed in tunemake.models.weights.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
from pathlib import Path

from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.data.tool_template import extend_tools
from tunemake.errors import StepError
from tunemake.models.weights import materialise, resolve, save_tokenizer
from tunemake.params import load as load_params
from tunemake.params.base import BaseParams

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the pinned base: tokenizer, config, manifest.json")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, base=BaseParams).base, args.out)


def run(params: BaseParams, out: Path) -> dict:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    source = resolve(params)
    folder = materialise(source, params.dtype, params.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=params.trust_remote_code)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=params.trust_remote_code)
    if params.chat_template:
        tokenizer.chat_template = Path(params.chat_template).read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise StepError(
            f"{params.model}: the tokenizer has no chat template. Set base.chat_template in params.yaml to a .jinja file "
            "(a ChatML template works for most base models)."
        )
    tools = "extended with tunemake's tool convention" if extend_tools(tokenizer) else "the model's own"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = str(config.dtype or "float32").removeprefix("torch.") if params.dtype == "auto" else params.dtype

    with atomic_dir(out) as tmp:
        save_tokenizer(tokenizer, tmp, folder)
        config.save_pretrained(tmp)
        if (folder / "generation_config.json").exists():
            GenerationConfig.from_pretrained(folder).save_pretrained(tmp)
        manifest = {
            **{k: v for k, v in source.items() if k != "path"},  # where it was on this machine is no provenance
            "architecture": config.architectures[0] if config.architectures else config.model_type,
            "dtype": dtype,
            "parameters": _parameters(folder),
            "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
            "chat_template_tools": tools,
            "trust_remote_code": params.trust_remote_code,
        }
        write_json(tmp / "manifest.json", manifest)
    log.info(
        "base: %s (%s) -> %s, %.1fM parameters, %s; weights in %s",
        params.model,
        source["kind"],
        out,
        manifest["parameters"] / 1e6,
        manifest["dtype"],
        folder,
    )
    return manifest


def _parameters(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(path, "np") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total
