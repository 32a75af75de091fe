"""base: a local directory, a GGUF, and the ways a model source can be refused."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from tunemake import base
from tunemake.errors import StepError
from tunemake.params import BaseParams


def test_local_directory_is_saved_as_safetensors_with_template_and_manifest(tiny_llama_dir, tmp_path):
    manifest = base.run(BaseParams(model=str(tiny_llama_dir)), tmp_path / "base")
    out = tmp_path / "base"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "chat_template.jinja").read_text().startswith("{% for message in messages %}")
    assert manifest["kind"] == "local" and manifest["architecture"] == "LlamaForCausalLM"
    assert json.loads((out / "manifest.json").read_text())["sha256"]["model.safetensors"] == manifest["sha256"]["model.safetensors"]
    original, saved = load_file(tiny_llama_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert all((original[k] == saved[k]).all() for k in original)


def test_pickle_weights_are_refused(tiny_llama_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(StepError, match=r"pickle weights \(pytorch_model.bin\), which tunemake never loads"):
        base.run(BaseParams(model=str(folder)), tmp_path / "base")


def test_model_without_chat_template_needs_one_in_params(tiny_llama_dir, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(StepError, match="base.chat_template"):
        base.run(BaseParams(model=str(folder)), tmp_path / "base")
    template = tmp_path / "chatml.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    base.run(BaseParams(model=str(folder), chat_template=str(template)), tmp_path / "base")
    assert (tmp_path / "base" / "chat_template.jinja").read_text() == template.read_text()


def test_unreachable_hub_id_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StepError, match="set base.model to the local directory"):
        base.run(BaseParams(model="HuggingFaceTB/SmolLM2-135M-Instruct"), tmp_path / "base")


def test_nonsense_model_spec_is_named(tmp_path):
    with pytest.raises(StepError, match="neither an existing directory"):
        base.run(BaseParams(model="./no/such/dir"), tmp_path / "base")


def test_bundled_gguf_is_found_without_importing_its_package():
    source = base.resolve(BaseParams())
    assert source["kind"] == "gguf" and source["path"].endswith(base.BUNDLED_FILE) and len(source["sha256"]) == 64
