"""Every recipe is a complete, valid params.yaml that keeps its seed job's method and knobs."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from tunemake.params import load

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
