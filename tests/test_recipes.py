"""Every recipe is a complete, valid params.yaml that keeps its seed job's method and knobs, and trains a few steps
end to end on the tiny model with its own method, optimizer, targets, trackers and data format."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from tunemake.errors import StepError
from tunemake.models.precision import training_precision
from tunemake.params.schema import load
from tunemake.runtime import cpu_bf16
from tunemake.steps import align, base, merge, pairs, prepare, tokenize, train

RECIPES = sorted(p.parent.name for p in (REPO / "recipes").glob("*/params.yaml"))


def test_there_is_a_recipe_per_seed_job():
    assert RECIPES == ["agent-logs-cpu", "function-calling-qlora", "lora-course-dpo", "practical-qa-multigpu"]


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_validates_and_has_every_section_of_the_default(name):
    path = REPO / "recipes" / name / "params.yaml"
    load(path)  # the schema every step uses: a misspelt key fails here
    sections = set(yaml.safe_load(path.read_text()))
    assert sections == set(yaml.safe_load((REPO / "params.yaml").read_text())), name  # the rules read each section
    assert (REPO / "recipes" / name / "README.md").is_file()


def test_recipes_keep_their_seed_jobs_knobs():
    agent = load(REPO / "recipes/agent-logs-cpu/params.yaml")
    assert agent.prepare.sources[0].system_by.field == "agent" and agent.train.lora.target_modules == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    ]
    qlora = load(REPO / "recipes/function-calling-qlora/params.yaml")
    assert (qlora.train.method, qlora.train.optimizer, qlora.train.precision) == ("qlora", "paged_adamw_8bit", "fp16")
    assert qlora.train.report_to == ["wandb"]  # the seed logs to Weights & Biases (WANDB_* from the environment)
    course = load(REPO / "recipes/lora-course-dpo/params.yaml")
    assert course.train.lora.use_dora and course.train.lora.use_rslora and course.align.enabled
    qa = load(REPO / "recipes/practical-qa-multigpu/params.yaml")
    assert (qa.train.method, qa.train.freeze.layers, qa.train.lr_scaling) == ("freeze", 2, "linear")


def recipe_rows(fmt: str, source: dict) -> list[dict]:
    """A few rows in the recipe's data format, as its real data would give them."""
    raw = REPO / "data" / "raw"
    if fmt == "xlam":
        return [json.loads(line) for line in (raw / "tool_calls.jsonl").read_text().splitlines()]  # 98/1/1 split
    if fmt == "qa":  # three phrasings of each bundled question: enough rows for a val and test row per topic
        rows = [json.loads(line) for line in (raw / "practical_qa.jsonl").read_text().splitlines()]
        return [{**row, "question": f"{row['question']} ({k})"} for k in range(3) for row in rows]
    if fmt == "preference":
        return [json.loads(line) for line in (raw / "preferences.jsonl").read_text().splitlines()[:24]]
    if fmt == "alpaca":
        return [
            {
                "instruction": f"Explain step {i} of pitching a tent.",
                "input": "" if i % 2 else "In the rain.",
                "output": f"Step {i}: stake the corners, then tension the fly.",
            }
            for i in range(40)
        ]
    agents = sorted(source["system_by"]["prompts"])  # seed 001's agent logs: one row per interaction
    return [
        {
            "task": f"Task {i}: refactor module {i}.",
            "output": f"Done: module {i} split in two.",
            "agent": agents[i % len(agents)],
            "success": i % 6 != 0,
        }
        for i in range(60)
    ]


@pytest.fixture
def restored_environment():
    """The steps run in this process here: wandb leaves its service's address (WANDB_SERVICE) and tunemake its
    tracker folders in os.environ, and a later test's `tunemake train` subprocess would inherit them."""
    saved = dict(os.environ)
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_trains_a_few_steps_on_the_tiny_model(
    name, tiny_llama_64_dir, tmp_path, monkeypatch, restored_environment
):
    """The recipe as written, with the tiny model for its hub id, its data files made in its format, a couple of
    steps, and the precisions this CPU cannot run (fp16; bf16 without AVX-512 BF16) refused with the fix named,
    then set to auto."""
    params = yaml.safe_load((REPO / "recipes" / name / "params.yaml").read_text())
    params["base"]["model"] = str(tiny_llama_64_dir)
    for source in params["prepare"]["sources"] + params["pairs"]["sources"]:
        path = tmp_path / Path(source["path"]).name
        path.write_text("".join(json.dumps(row) + "\n" for row in recipe_rows(source["format"], source)))
        source["path"] = str(path)
    params["prepare"]["replay"] = 0  # the replay step's base answers are a pipeline run's, not this test's
    quick = {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "checkpoint_steps": 2}
    params["train"]["eval_steps"] = 2
    for section in ("train", "align"):
        params[section].update(quick)
        wanted = params[section].get("precision")
        if wanted == "fp16" or (wanted == "bf16" and not cpu_bf16()):
            with pytest.raises(StepError, match=f"precision is {wanted} but there is no GPU here.*; use auto"):
                training_precision(wanted)
            params[section]["precision"] = "auto"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    loaded = load(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)  # dvclive writes dvclive/ in the working directory
    monkeypatch.setenv("WANDB_MODE", "offline")

    base.run(loaded.base, Path("base"))
    prepare.run(loaded.prepare, Path("data"))
    tokenize.run(loaded.tokenize, Path("base"), Path("data"), Path("tokenized"))
    summary = train.run(loaded.train, Path("base"), Path("tokenized"), Path("train"), Path("checkpoints/train"))

    recipe = load(REPO / "recipes" / name / "params.yaml").train
    assert summary["steps"] == 2 and summary["method"] == recipe.method
    assert ("bitsandbytes" in summary["optimizer"]) == ("8bit" in recipe.optimizer)
    if recipe.method in ("lora", "qlora"):
        adapter = json.loads(Path("train/model/adapter_config.json").read_text())
        linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # PEFT's all-linear
        targets = linear if recipe.lora.target_modules == "all-linear" else recipe.lora.target_modules
        assert sorted({t.rsplit(".", 1)[-1] for t in adapter["target_modules"]}) == sorted(targets)
        assert (adapter["use_dora"], adapter["use_rslora"]) == (recipe.lora.use_dora, recipe.lora.use_rslora)
    assert (summary["quantization"] is not None) == (recipe.method == "qlora")
    if "dvclive" in recipe.report_to:
        assert Path("dvclive/train/metrics.json").is_file()
    if "wandb" in recipe.report_to or "tensorboard" in recipe.report_to:
        assert any(Path("tracking/train").iterdir())
    by_source = loaded.prepare.sources[0]
    if by_source.system_by:  # seed 001: each row's system prompt is its agent's
        for row in map(json.loads, Path("data/train.jsonl").read_text().splitlines()):
            assert row["messages"][0]["content"] == by_source.system_by.prompts[row["meta"]["agent"]]
    if loaded.align.enabled:  # seed 004: DPO on the merged SFT model
        merge.run(loaded.merge, Path("base"), Path("train"), Path("merged"))
        pairs.run(loaded, Path("data"), Path("pairs"))
        aligned = align.run(loaded, Path("merged"), Path("pairs"), Path("align"), Path("checkpoints/align"))
        assert aligned["steps"] == 2 and Path("align/model/model.safetensors").is_file()
