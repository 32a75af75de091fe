"""base: a local directory, a GGUF, and the ways a model source can be refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tunemake.cache import make_once
from tunemake.data.tool_template import OWN_TEMPLATE, TOOL_PREAMBLE
from tunemake.errors import StepError
from tunemake.models import weights
from tunemake.params.base import BaseParams
from tunemake.steps import base


def test_local_directory_is_pinned_not_copied(tiny_llama_dir, tmp_path):
    manifest = base.run(BaseParams(model=str(tiny_llama_dir)), tmp_path / "base")
    out = tmp_path / "base"
    assert (out / "tokenizer.json").is_file() and not list(out.glob("*.safetensors"))
    # SmolLM2's own template, extended to render tools (tunemake.data.tool_template)
    saved = (out / "chat_template.jinja").read_text()
    assert saved.startswith(TOOL_PREAMBLE[:40]) and saved.split(OWN_TEMPLATE)[1].startswith(
        "{% for message in messages %}"
    )
    assert manifest["kind"] == "local" and manifest["architecture"] == "LlamaForCausalLM"
    assert manifest["parameters"] == sum(p.numel() for p in weights.load(out).parameters())
    assert (
        json.loads((out / "manifest.json").read_text())["sha256"]["model.safetensors"]
        == manifest["sha256"]["model.safetensors"]
    )
    assert weights.locate(out) == tiny_llama_dir
    original, loaded = load_file(tiny_llama_dir / "model.safetensors"), weights.load(out).state_dict()
    assert all((original[k] == loaded[k]).all() for k in original)

    (tiny_llama_dir / "model.safetensors").rename(tiny_llama_dir / "moved.safetensors")
    try:
        with pytest.raises(StepError, match="no longer holds model.safetensors"):
            weights.locate(out)
    finally:
        (tiny_llama_dir / "moved.safetensors").rename(tiny_llama_dir / "model.safetensors")


@pytest.mark.integration  # dequantises the bundled GGUF
def test_gguf_is_dequantised_once_into_the_cache_and_found_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEMAKE_CACHE", str(tmp_path / "cache"))
    manifest = base.run(BaseParams(), tmp_path / "base")
    cached = weights.locate(tmp_path / "base")
    assert cached.parent == tmp_path / "cache" / "base" and manifest["parameters"] == 134_515_008
    (cached / "model.safetensors").unlink()  # a fresh machine: the pinned GGUF is dequantised again
    assert weights.locate(tmp_path / "base") == cached and (cached / "model.safetensors").is_file()


def test_a_cache_entry_is_made_once_when_two_processes_want_it_together_and_a_made_one_needs_no_lock(tmp_path):
    """The mechanism behind the dequantised base, the converter and the base GGUF (tunemake.cache.make_once)."""
    entry, makes = tmp_path / "cache" / "entry", tmp_path / "makes.log"
    script = (
        "import sys, time; from pathlib import Path; from tunemake.cache import make_once\n"
        "entry, makes = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "def make():\n"
        "    with makes.open('a') as log: log.write('made\\n')\n"
        "    time.sleep(2)  # the other process asks meanwhile\n"
        "    entry.write_text('done')\n"
        "print(make_once(entry, entry.exists, make).read_text())\n"
    )
    both = [
        subprocess.Popen([sys.executable, "-c", script, entry, makes], stdout=subprocess.PIPE, text=True) for _ in "ab"
    ]
    assert [process.communicate()[0] for process in both] == ["done\n", "done\n"]
    assert makes.read_text() == "made\n"

    # An entry already there is taken without creating the lock: a read-only cache that holds it works.
    (tmp_path / "cache" / "entry.lock").unlink()
    assert make_once(entry, entry.exists, lambda: pytest.fail("made again")) == entry
    assert not (tmp_path / "cache" / "entry.lock").exists()


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
    assert (tmp_path / "base" / "chat_template.jinja").read_text().split(OWN_TEMPLATE)[1] == template.read_text()


def test_unreachable_hub_id_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StepError, match="set base.model to the local directory"):
        base.run(BaseParams(model="HuggingFaceTB/SmolLM2-135M-Instruct"), tmp_path / "base")


def test_nonsense_model_spec_is_named(tmp_path):
    with pytest.raises(StepError, match="neither an existing directory"):
        base.run(BaseParams(model="./no/such/dir"), tmp_path / "base")


def test_bundled_gguf_is_found_without_importing_its_package():
    source = weights.resolve(BaseParams())
    assert source["kind"] == "gguf" and source["path"].endswith(weights.BUNDLED_FILE) and len(source["sha256"]) == 64
