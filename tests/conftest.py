"""Shared fixtures: the real SmolLM2 tokenizer, a tiny random Llama, and a throwaway copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: tunemake, snakemake, dvc
# The pipeline's steps: the modules of tunemake/steps/, a rule and a DVC stage each.
STEPS = sorted(p.stem for p in (REPO / "src" / "tunemake" / "steps").glob("*.py") if p.stem != "__init__")

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Nor an instance's metadata address: botocore's credential chain (the k8s profile check) asks it last.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def pytest_configure(config):
    """Two pytest-xdist workers (pyproject's -n 2) share the cores, each process sized to all of them as tunemake
    sizes it; their OpenMP threads sleep while they wait instead of spinning on a core the other worker needs."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_report_header(config):
    """The CPU features that pick torch's and llama.cpp's kernels, and with them the rounding: a failure report
    then says which CPU it came from."""
    from tunemake.runtime import CPU_FLAGS, cpu_features

    cpu = cpu_features()
    return f"cpu: {cpu['model']}; flags: {' '.join(cpu['flags']) or 'none of ' + ' '.join(CPU_FLAGS)}"


# Fixtures that build or load a model: a test using one is an integration test.
MODEL_FIXTURES = {"smol_tokenizer_dir", "tiny_llama_dir", "tiny_llama_64_dir", "converter_dir", "sft", "workspace"}


def pytest_collection_modifyitems(items):
    """Three tiers (CONTRIBUTING.md): `slow` end-to-end runs, `integration` tests on tiny models and real tools, and
    `unit` for the rest, marked here. The slow runs go first, so the workers finish together on the short tests."""
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("integration"):
            continue
        item.add_marker(pytest.mark.integration if MODEL_FIXTURES & set(item.fixturenames) else pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct's own tokenizer and chat template, read from the bundled GGUF."""
    from transformers import AutoTokenizer

    from tunemake.models.weights import BUNDLED_FILE, resolve
    from tunemake.params.base import BaseParams

    gguf = Path(resolve(BaseParams())["path"])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=BUNDLED_FILE)
    out = tmp_path_factory.mktemp("smol_tokenizer")
    tokenizer.save_pretrained(out)
    return out


def tiny_model(out: Path, tokenizer, width: int, config_class: str = "LlamaConfig", **extra) -> Path:
    """A 2-layer random model `width` wide of any architecture transformers has a config for, with `tokenizer`,
    saved as a local Hugging Face directory."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_llama(out: Path, tokenizer_dir: Path, width: int) -> Path:
    """A 2-layer random Llama `width` wide with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer

    return tiny_model(out, AutoTokenizer.from_pretrained(tokenizer_dir), width)


@pytest.fixture(scope="session")
def converter_dir(tmp_path_factory) -> Path:
    """The converter step's output: llama.cpp's converter of the installed llama-cpp-python (cached sdist)."""
    from tunemake.steps import converter

    out = tmp_path_factory.mktemp("converter") / "converter"
    converter.run(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smol_tokenizer_dir) -> Path:
    """32 wide: seconds per training run."""
    return tiny_llama(tmp_path_factory.mktemp("tiny_llama"), smol_tokenizer_dir, 32)


@pytest.fixture(scope="session")
def tiny_llama_64_dir(tmp_path_factory, smol_tokenizer_dir) -> Path:
    """64 wide, for 4-bit tests: bitsandbytes quantizes in blocks of 64, and on CPUs with AVX-512 BF16 its packed
    path cannot reshape a narrower row (absmax becomes [32, 0])."""
    return tiny_llama(tmp_path_factory.mktemp("tiny_llama_64"), smol_tokenizer_dir, 64)


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture(scope="session")
def sft(tmp_path_factory, tiny_llama_dir) -> Path:
    """results/merged (2 LoRA steps on the tiny Llama), results/data and results/pairs, made by the real steps on a data
    slice: what align and reinforce start from."""
    root = tmp_path_factory.mktemp("align_inputs")
    (root / "data" / "raw").mkdir(parents=True)
    # tool-call rows, and rows no offered tool fits (answered in words)
    for name, keep in (("tool_calls.jsonl", [*range(48), *range(336, 348)]), ("practical_qa.jsonl", range(12))):
        lines = (REPO / "data" / "raw" / name).read_text().splitlines(keepends=True)
        (root / "data" / "raw" / name).write_text("".join(lines[i] for i in keep))
    pairs = (REPO / "data" / "raw" / "preferences.jsonl").read_text().splitlines(keepends=True)
    (root / "data" / "raw" / "preferences.jsonl").write_text("".join(pairs[:48] + pairs[336:348]))  # the same rows
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["model"] = str(tiny_llama_dir)
    params["tokenize"]["max_length"] = 512
    params["prepare"]["replay"] = 0
    params["train"].update(max_steps=2, batch_size=4, learning_rate=5e-3)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for step in (
        ["base", "--out", "results/base"],
        ["prepare", "--out", "results/data"],
        ["pairs", "--data", "results/data", "--out", "results/pairs"],
        ["tokenize", "--base", "results/base", "--data", "results/data", "--out", "results/tokenized"],
        ["train", "--base", "results/base", "--data", "results/tokenized", "--out", "results/train"]
        + ["--checkpoints", "checkpoints/train"],
        ["merge", "--base", "results/base", "--trained", "results/train", "--out", "results/merged"],
    ):
        run(["tunemake", *step], root)
    return root


@pytest.fixture
def workspace(tmp_path, tiny_llama_dir) -> Path:
    """A git + DVC copy of the repository whose base model is the tiny Llama, training for two steps, evaluating 4 rows."""
    for name in (
        "Snakefile",
        "dvc.yaml",
        "params.yaml",
        "rules",
        "local",
        "slurm",
        "k8s",
        "src",
        "envs",
        "data",
        ".dvc",
        ".dvcignore",
        ".gitignore",
    ):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp", "cache")
            )
        elif source.exists():
            shutil.copy2(source, tmp_path / name)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["base"]["model"] = str(tiny_llama_dir)
    params["tokenize"]["max_length"] = 512
    params["train"].update(max_steps=2, batch_size=4, eval_steps=2, checkpoint_steps=2)
    params["eval"].update(limit=4, max_new_tokens=8, speed_rows=2)
    # One quant: each GGUF costs every pipeline run a conversion and an evaluation; test_frontdoors runs the default set
    params["gguf"].update(quants=["Q5_0"], imatrix_quants=[])
    params["suite"].update(limit=4, max_new_tokens=8)
    params["replay"].update(limit=8, max_new_tokens=16)
    params["bfcl"].update(rows=2, max_new_tokens=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], tmp_path)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], tmp_path)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "workspace"], tmp_path)
    return tmp_path
