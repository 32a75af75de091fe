"""Four model families besides Llama end to end: a tiny random model of each architecture with the family's real chat
template and special tokens, as a local Hugging Face directory; base, tokenize, a few training steps, merge, GGUF
with the pinned converter, loaded by llama.cpp with the template round trip and stop tokens checked (gguf.run).

The vocabulary is SmolLM2's byte-level BPE with each family's special tokens added: the pinned converter reads BPE
vocabularies for all four (Qwen natively; Gemma 3, Phi-3 and Mistral through their gpt2-vocabulary paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_model, write_jsonl
from tunemake.data import chat
from tunemake.params.schema import Params
from tunemake.steps import base, gguf, merge, tokenize, train

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"
# family -> (transformers config class, its extra settings, the real template, the special tokens, eos, the stop
# tokens the template's turns end with)
FAMILIES = {
    "qwen3": (
        "Qwen3Config",
        {"head_dim": 16},
        "qwen3.jinja",
        ["<|im_start|>", "<|im_end|>"],
        "<|im_end|>",
        ["<|im_end|>"],
    ),
    "gemma3": (
        "Gemma3TextConfig",
        {"head_dim": 16, "sliding_window": 64},
        "gemma3.jinja",
        ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>"],
        "<eos>",
        ["<end_of_turn>", "<eos>"],
    ),
    "phi3": (
        "Phi3Config",
        {},
        "phi3.jinja",
        ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|endoftext|>"],
        "<|endoftext|>",
        ["<|end|>", "<|endoftext|>"],
    ),
    "mistral": (
        "MistralConfig",
        {"head_dim": 16},
        "mistral-nemo",
        ["[INST]", "[/INST]", "<s>", "</s>"],
        "</s>",
        ["</s>"],
    ),
}
ROWS = [
    {
        "id": f"qa:{i}",
        "meta": {"file": "qa.jsonl", "line": i + 1},
        "messages": [
            {"role": "system", "content": "Answer in two lines."},
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{i} plus {i} is {2 * i}.\nThat is all."},
        ],
    }
    for i in range(12)
]


def template(name: str) -> str:
    if name == "mistral-nemo":
        from importlib.metadata import version

        from tunemake.steps import converter

        folder = converter.fetch(version("llama-cpp-python")) / converter.TEMPLATES
        return (folder / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text(encoding="utf-8")
    return (TRL_TEMPLATES / name).read_text(encoding="utf-8")


def tiny_family_model(out: Path, tokenizer_dir: Path, family: str) -> Path:
    from transformers import AutoTokenizer

    config_class, extra, template_name, specials, eos, _ = FAMILIES[family]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": specials}, replace_extra_special_tokens=False)
    tokenizer.eos_token = eos
    tokenizer.chat_template = template(template_name)
    tiny_model(out, tokenizer, 64, config_class, **extra)
    if family == "phi3":  # the converter reads a BPE vocabulary for Phi3 models as Phi-4-mini's (GPT2Tokenizer)
        settings = json.loads((out / "tokenizer_config.json").read_text())
        (out / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "GPT2Tokenizer"}))
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("family_data")
    for name, rows in (("train", ROWS[:8]), ("val", ROWS[8:10]), ("test", ROWS[10:])):
        write_jsonl(data / f"{name}.jsonl", rows)
    return data


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_tiny_model_of_the_family_trains_merges_and_exports(
    family, tmp_path, smol_tokenizer_dir, splits, converter_dir
):
    params = Params.model_validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    params.base.model = str(tiny_family_model(tmp_path / "hf", smol_tokenizer_dir, family))
    params.train.max_steps, params.train.batch_size, params.train.checkpoint_steps = 3, 4, 3
    params.train.learning_rate = 1e-2
    params.gguf.outtype, params.gguf.quants, params.gguf.imatrix_quants = "f32", [], []
    results = tmp_path / "results"

    base.run(params.base, results / "base")
    stats = tokenize.run(params.tokenize, results / "base", splits, results / "tokenized")
    # the template's own turns, its end-of-turn token trained, nothing of the prompts
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(results / "base")
    row = load_from_disk(str(results / "tokenized" / "dataset"))["train"][0]
    trained = tokenizer.decode([t for t in row["labels"] if t != -100])
    stops = FAMILIES[family][5]
    answer = trained.removeprefix("<think>\n\n</think>\n\n")  # Qwen3 writes an empty thought before answers
    assert answer.startswith("0 plus 0 is 0.\nThat is all.") and any(answer.endswith(s) for s in stops), trained
    assert "What is" not in trained and stats["splits"]["train"]["rows"] == 8
    assert sorted(tokenizer.convert_ids_to_tokens(chat.stop_token_ids(tokenizer))) == sorted(stops)

    train.run(params.train, results / "base", results / "tokenized", results / "trained", tmp_path / "checkpoints")
    merge.run(params.merge, results / "base", results / "trained", results / "merged")
    generation = json.loads((results / "merged" / "generation_config.json").read_text())
    eos = generation["eos_token_id"]
    assert sorted(tokenizer.convert_ids_to_tokens(eos if isinstance(eos, list) else [eos])) == sorted(stops)

    # convert, load in llama.cpp, template round trip token for token, stop tokens end generation there
    report = gguf.run(params.gguf, results / "merged", converter_dir, results / "tokenized", results / "gguf")
    assert sorted(report["F32"]["stop_tokens"]) == sorted(stops)
