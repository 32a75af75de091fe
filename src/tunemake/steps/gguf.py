"""gguf: the shipped model (merged, or aligned / reinforced when those steps ran) as GGUF files (F16 plus each quant
in params), load-checked, with an Ollama Modelfile.

Conversion runs llama.cpp's own converter (the converter step's output) in a subprocess; quantization uses
llama_cpp.llama_model_quantize from the same llama.cpp build, weighted by an importance matrix computed from the
training split for the quants in gguf.imatrix_quants (tunemake.llama.imatrix; stored as imatrix.gguf, llama.cpp's
format); with gguf.imatrix_compare each of those is also made without it, so evaluate measures the difference.
Every file is then loaded with llama_cpp.Llama, and its embedded chat template and stop tokens must render a sample
conversation into exactly the token ids the training tokenizer produces: a GGUF that would prompt the model
differently from training fails the step.
sizes.json gives each file's size, bits per weight and the tensor types really inside it (counted from the file
with the pinned gguf-py), with the tensors that fell back from a K-quant to a legacy type.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
from collections import Counter
from pathlib import Path

from tunemake.data.chat import Renderer, stop_token_ids
from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.data.tool_template import TOOL_INSTRUCTIONS
from tunemake.errors import StepError
from tunemake.llama import imatrix
from tunemake.llama.llamacpp import convert, file_template, load
from tunemake.models.weights import final_model
from tunemake.params import load as load_params
from tunemake.params.gguf import GgufParams
from tunemake.runtime import threads

log = logging.getLogger("tunemake")

# Covers a system prompt, tools, several turns, a call and its result: what a served request renders.
SAMPLE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "description": "Convert an amount between currencies.",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
                "required": ["amount", "to"],
            },
        },
    }
]
SAMPLE = [
    {"role": "system", "content": "You answer by calling functions."},
    {"role": "user", "content": "How much is 161 AUD in GBP?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "convert_currency", "arguments": {"amount": 161, "to": "GBP"}}}
        ],
    },
    {"role": "tool", "content": '{"result": 84.2}'},
]
BLOCKS_OF_32 = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL"}  # what the 256-block types fall back to
CHATML_PROBE = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
# Ollama's Go template for a ChatML model: the system turn with the tools in tunemake's convention (chat.py), calls
# and tool results as training wrote them, so Ollama offers the tools and reads <tool_call> answers back as calls.
# Go prints JSON without Python's spaces: the same convention, not the same tokens (checked: the Jinja template's).
CHATML_TEMPLATE = """{{- if or .System .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}{{ if .Tools }}

{{ end }}{{ end }}{{ if .Tools }}INSTRUCTIONS
<tools>
{{- range .Tools }}
{{ .Function }}
{{- end }}
</tools>{{ end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ else if ne .Role "system" }}<|im_start|>{{ .Role }}
{{ .Content }}
{{- $content := .Content }}
{{- range $j, $call := .ToolCalls }}{{ if or $j $content }}
{{ end }}<tool_call>
{"name": "{{ $call.Function.Name }}", "arguments": {{ $call.Function.Arguments }}}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- end }}<|im_start|>assistant
""".replace("INSTRUCTIONS", TOOL_INSTRUCTIONS)


def quantize(source: Path, target: Path, quant: str, matrix: imatrix.QuantizeArray | None) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = threads()
    if matrix is not None:
        params.imatrix = matrix.array
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) != 0:
        raise StepError(f"llama.cpp could not quantize {source} to {quant}")


def tensor_types(path: Path, converter: Path, name: str) -> dict:
    """What the file holds, counted from its tensors: each type's share of the weights, and how many tensors fell
    back from a 256-block type (K-quants, IQ types) to a 32-block one (llama.cpp does so when a row is not a multiple
    of 256 wide, as all of SmolLM2-135M's 576-wide rows are: its "Q4_K_M" is then mostly Q5_0 and Q8_0)."""
    counts: Counter = Counter()
    weights: Counter = Counter()
    for tensor in imatrix.gguf_py(converter).GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] += 1
        weights[tensor.tensor_type.name] += int(tensor.n_elements)
    total = sum(weights.values())
    super_blocks = "_K" in name or (name.startswith("IQ") and name != "IQ4_NL")
    fallback = sum(n for kind, n in counts.items() if kind in BLOCKS_OF_32) if super_blocks else 0
    return {
        "tensor_types": dict(counts.most_common()),
        "weight_share": {kind: round(n / total, 3) for kind, n in weights.most_common()},
        "fallback_tensors": fallback,
    }


def check_template(llm, path: Path, tokenizer) -> dict:
    """The GGUF's chat template and stop tokens against the training tokenizer's, token for token."""
    import llama_cpp

    formatter = file_template(llm)
    if formatter is None:
        raise StepError(
            f"{path}: the GGUF carries no chat template (tokenizer.chat_template); the converter should copy "
            "it from the merged model's tokenizer_config.json / chat_template.jinja"
        )
    token_text = lambda t: llm._model.token_get_text(t)  # noqa: E731
    gguf_text = formatter(messages=SAMPLE, tools=SAMPLE_TOOLS).prompt
    gguf_ids = llm.tokenize(gguf_text.encode(), add_bos=False, special=True)
    hf_text = Renderer(tokenizer).render(SAMPLE, SAMPLE_TOOLS, add_generation_prompt=True)
    hf_ids = tokenizer(hf_text, add_special_tokens=False)["input_ids"]
    if gguf_ids != hf_ids:
        at = next((i for i, (a, b) in enumerate(zip(gguf_ids, hf_ids)) if a != b), min(len(gguf_ids), len(hf_ids)))
        raise StepError(
            f"{path}: the GGUF's chat template renders a different prompt than the training tokenizer.\n"
            f"  first difference at token {at} of {len(hf_ids)} (training) / {len(gguf_ids)} (GGUF)\n"
            f"  training: {tokenizer.decode(hf_ids[max(0, at - 5) : at + 10])!r}\n"
            f"  GGUF:     {tokenizer.decode(gguf_ids[max(0, at - 5) : at + 10])!r}\n"
            "A model prompted this way would not see the format it was trained on. Keep the merged model's "
            "chat_template.jinja as the one the converter embeds (base.chat_template in params.yaml sets it)."
        )
    stops = stop_token_ids(tokenizer)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    not_eog = [t for t in stops if not llama_cpp.llama_vocab_is_eog(vocab, t)]
    if not_eog:
        raise StepError(
            f"{path}: the training template ends turns with {[token_text(t) for t in not_eog]}, but llama.cpp "
            "would not stop generating at them (they are not end-of-generation tokens in the GGUF)."
        )
    return {"template_tokens": len(gguf_ids), "stop_tokens": [token_text(t) for t in stops]}


def modelfile(gguf_name: str, tokenizer, params: GgufParams) -> str:
    """An Ollama Modelfile. ChatML templates get an equivalent Go TEMPLATE; others rely on the GGUF's metadata."""
    lines = [f"FROM ./{gguf_name}"]
    probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    if tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True) == CHATML_PROBE:
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
    else:
        lines.append(
            "# No TEMPLATE: this chat template is not ChatML; Ollama reads tokenizer.chat_template from the GGUF."
        )
        log.warning("gguf: the Modelfile has no TEMPLATE (not a ChatML template); check `ollama show --template`")
    lines += [f'PARAMETER stop "{tokenizer.convert_ids_to_tokens(t)}"' for t in stop_token_ids(tokenizer)]
    if params.system:
        lines.append(f'SYSTEM """{params.system}"""')
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merged", type=Path, required=True, help="the merge step's output")
    parser.add_argument("--align", type=Path, help="the align step's output: its model is converted when it ran")
    parser.add_argument(
        "--reinforce", type=Path, help="the reinforce step's output: its model is converted when it ran"
    )
    parser.add_argument("--converter", type=Path, required=True, help="the converter step's output")
    parser.add_argument("--data", type=Path, required=True, help="the tokenize step's output (imatrix calibration)")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(
        load_params(args.params, args.set, gguf=GgufParams).gguf,
        final_model(args.merged, args.align, args.reinforce),
        args.converter,
        args.data,
        args.out,
    )


def run(params: GgufParams, merged: Path, converter: Path, data: Path, out: Path) -> dict:
    import llama_cpp
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    files = {}
    with atomic_dir(out) as tmp:
        unquantized = params.outtype.upper()
        convert(converter, merged, tmp / f"model-{unquantized}.gguf", params.outtype)
        files[unquantized] = tmp / f"model-{unquantized}.gguf"
        matrix, calibration = None, None
        if params.imatrix_quants:
            means, calibration = imatrix.compute(
                merged, data, converter, files[unquantized], tmp / "imatrix.gguf", params.imatrix_tokens
            )
            matrix = imatrix.QuantizeArray(means)
        made = [(quant, quant, matrix if quant in params.imatrix_quants else None) for quant in params.quants]
        made += [(f"{quant}-no-imatrix", quant, None) for quant in params.compared()]
        for name, quant, used in made:
            quantize(files[unquantized], tmp / f"model-{name}.gguf", quant, used)
            files[name] = tmp / f"model-{name}.gguf"
        with_imatrix = {name for name, _, used in made if used is not None}
        report = {}
        for name, path in files.items():
            llm = load(path)
            checked = check_template(llm, out / path.name, tokenizer)
            n_params = llama_cpp.llama_model_n_params(llm.model)
            size = path.stat().st_size
            report[name] = {
                "file": path.name,
                "bytes": size,
                "megabytes": round(size / 2**20, 1),
                "bits_per_weight": round(8 * size / n_params, 2),
                "parameters": n_params,
                "imatrix": name in with_imatrix,
                **tensor_types(path, converter, name),
                **checked,
            }
            log.info(
                "gguf: %s %.1f MB, %.2f bits/weight (%s; %d tensors fell back), template and stop tokens match "
                "training",
                path.name,
                size / 2**20,
                8 * size / n_params,
                ", ".join(f"{kind} {share:.0%}" for kind, share in report[name]["weight_share"].items() if share),
                report[name]["fallback_tensors"],
            )
            del llm
        shipped = params.quants[0] if params.quants else unquantized
        (tmp / "Modelfile").write_text(modelfile(files[shipped].name, tokenizer, params))
        write_json(
            tmp / "sizes.json",
            {
                "shipped": shipped,
                "unquantized": unquantized,
                "order": list(files),
                "files": report,
                "imatrix": calibration,
            },
        )
    return report
