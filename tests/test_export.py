"""gguf on a tiny Llama trained into the tool-call format: convert, quantize, load, template round trip, Modelfile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, run
from tunemake.errors import StepError
from tunemake.evaluation.scoring import parse_calls
from tunemake.steps import gguf as gguf_mod

CITIES = ["Austin", "Boston", "Denver", "Lisbon", "Oslo", "Paris", "Quito", "Rome", "Seoul", "Tunis"]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"city": {"type": "str", "description": "City name"}},
    }
]


def one_call_rows() -> list[dict]:
    """xlam rows that all answer with the same call: a tiny model learns the format in seconds (it cannot copy)."""
    answer = json.dumps([{"name": "get_weather", "arguments": {"city": "Austin"}}])
    return [
        {
            "id": i,
            "query": f"Weather check number {i} for {CITIES[i % 10]}?",
            "tools": json.dumps(TOOLS),
            "answers": answer,
            "group": f"g{i}",
        }
        for i in range(40)
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_llama_dir) -> Path:
    """The real steps from prepare to gguf, training the tiny model until it answers in the <tool_call> format."""
    root = tmp_path_factory.mktemp("export")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "tool_calls.jsonl").write_text("".join(json.dumps(r) + "\n" for r in one_call_rows()))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["model"] = str(tiny_llama_dir)
    params["prepare"]["sources"] = params["prepare"]["sources"][:1]
    params["train"].update(
        method="full",
        max_steps=150,
        batch_size=8,
        gradient_accumulation=1,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        eval_steps=150,
        checkpoint_steps=150,
    )
    params["gguf"].update(outtype="f32", quants=["Q8_0", "Q4_K_M"], imatrix_quants=["Q4_K_M"])
    params["prepare"]["replay"] = 0  # the steps run by hand here, without the replay step
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for step in (
        ["base", "--out", "results/base"],
        ["prepare", "--out", "results/data"],
        ["tokenize", "--base", "results/base", "--data", "results/data", "--out", "results/tokenized"],
        [
            "train",
            "--base",
            "results/base",
            "--data",
            "results/tokenized",
            "--out",
            "results/train",
            "--checkpoints",
            "checkpoints/train",
        ],
        ["merge", "--base", "results/base", "--trained", "results/train", "--out", "results/merged"],
        ["converter", "--out", "results/converter"],
        [
            "gguf",
            "--merged",
            "results/merged",
            "--converter",
            "results/converter",
            "--data",
            "results/tokenized",
            "--out",
            "results/gguf",
        ],
    ):
        run(["tunemake", *step], root)
    return root


def test_gguf_writes_f32_and_quant_with_sizes_and_modelfile(exported):
    out = exported / "results" / "gguf"
    sizes = json.loads((out / "sizes.json").read_text())
    order = ["F32", "Q8_0", "Q4_K_M", "Q4_K_M-no-imatrix"]
    assert (sizes["shipped"], sizes["unquantized"], sizes["order"]) == ("Q8_0", "F32", order)
    for name, entry in sizes["files"].items():
        assert (out / entry["file"]).stat().st_size == entry["bytes"]
        assert entry["stop_tokens"] == ["<|im_end|>"]  # every file, imatrix or not, passed the template round trip
    assert {name: entry["imatrix"] for name, entry in sizes["files"].items()} == dict(zip(order, [0, 0, 1, 0]))
    # What is inside, counted from the files: norms stay F32; the tiny model's 32-wide rows cannot take a K-quant's
    # 256-blocks, so every tensor of its "Q4_K_M" falls back to a legacy type
    files = sizes["files"]
    assert set(files["F32"]["tensor_types"]) == {"F32"} and files["F32"]["fallback_tensors"] == 0
    assert set(files["Q8_0"]["tensor_types"]) == {"Q8_0", "F32"} and files["Q8_0"]["fallback_tensors"] == 0
    inside = files["Q4_K_M"]["tensor_types"]
    assert not any("_K" in kind for kind in inside)
    assert files["Q4_K_M"]["fallback_tensors"] == sum(n for kind, n in inside.items() if kind != "F32") > 0
    assert sizes["files"]["Q8_0"]["bytes"] < sizes["files"]["F32"]["bytes"] / 2  # the vocabulary is a large share here
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-Q8_0.gguf\n")
    # Ollama's Go template offers the tools and writes calls and results in the trained convention
    assert 'TEMPLATE """{{- if or .System .Tools }}<|im_start|>system' in modelfile
    assert (
        "<tools>\n{{- range .Tools }}" in modelfile and '<tool_call>\n{"name": "{{ $call.Function.Name }}"' in modelfile
    )
    assert "<tool_response>\n{{ .Content }}\n</tool_response>" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_llama_cpp_answers_a_test_prompt_in_the_trained_format(exported):
    """What a user of the shipped file does: llama_cpp.Llama(...).create_chat_completion(...)."""
    from llama_cpp import Llama

    record = json.loads((exported / "results" / "data" / "test.jsonl").read_text().splitlines()[0])  # held out
    llm = Llama(model_path=str(exported / "results" / "gguf" / "model-Q8_0.gguf"), n_ctx=1024, verbose=False)
    response = llm.create_chat_completion(
        messages=record["messages"][:-1], tools=record["tools"], temperature=0.0, max_tokens=80
    )
    answer = response["choices"][0]["message"]["content"]
    assert answer.lstrip().startswith("<tool_call>"), answer
    assert parse_calls(answer) == [{"name": "get_weather", "arguments": {"city": "Austin"}}], answer
    assert response["choices"][0]["finish_reason"] == "stop", answer  # and it stopped at <|im_end|>


def test_a_planted_wrong_template_fails_the_round_trip_loudly(exported, tmp_path):
    """A GGUF whose embedded template differs from training (rewritten with gguf-py's own metadata tool)."""
    converter = exported / "results" / "converter"
    source = exported / "results" / "gguf" / "model-Q8_0.gguf"
    planted = tmp_path / "planted.gguf"
    wrong = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] "
    env = {**os.environ, "PYTHONPATH": str(converter / "gguf-py")}
    subprocess.run(
        [
            sys.executable,
            str(converter / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"),
            str(source),
            str(planted),
            "--chat-template",
            wrong,
            "--force",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported / "results" / "merged")
    gguf_mod.check_template(gguf_mod.load(source), source, tokenizer)  # the real file passes
    with pytest.raises(StepError, match="planted.gguf: the GGUF's chat template renders a different prompt") as err:
        gguf_mod.check_template(gguf_mod.load(planted), planted, tokenizer)
    assert "first difference at token 0" in str(err.value) and "[system]" in str(err.value)


def test_imatrix_holds_each_quantized_weights_mean_squared_inputs_and_changes_the_quant(exported):
    """One entry per quantized block weight with its column count, finite and positive; the value for attn_q of
    block 0 recomputed without hooks (the first block's input norm applied to the embeddings); and the quant made
    with it differs from the one made without."""
    import torch

    from tunemake.llama import imatrix
    from tunemake.models.weights import load

    results = exported / "results"
    converter, out = results / "converter", results / "gguf"
    means = imatrix.read(out / "imatrix.gguf", converter)
    f32 = imatrix.gguf_py(converter).GGUFReader(out / "model-F32.gguf")
    quantized = {t.name: int(t.shape[0]) for t in f32.tensors if t.name.startswith("blk.") and len(t.shape) == 2}
    assert {name: m.size for name, m in means.items()} == quantized  # q, k, v, o, gate, up, down per block
    assert all(np.isfinite(m).all() and (m > 0).all() for m in means.values())
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes["imatrix"]["entries"] == len(quantized) and sizes["imatrix"]["missing"] == []

    model = load(results / "merged", dtype=torch.float32).eval()
    rows = imatrix.calibration_rows(results / "tokenized", sizes["imatrix"]["tokens"])
    assert sum(map(len, rows)) == sizes["imatrix"]["tokens"]
    with torch.inference_mode():
        normed = [model.model.layers[0].input_layernorm(model.model.embed_tokens(torch.tensor([r])))[0] for r in rows]
    expected = torch.cat(normed).double().square().mean(0).numpy()
    np.testing.assert_allclose(means["blk.0.attn_q.weight"], expected, rtol=1e-4)

    with_matrix, without = (out / f"model-{name}.gguf" for name in ("Q4_K_M", "Q4_K_M-no-imatrix"))
    assert with_matrix.stat().st_size == without.stat().st_size and with_matrix.read_bytes() != without.read_bytes()
