"""One DAG, two front doors: the Snakemake rules and dvc.yaml agree, and both really run it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, STEPS, run
from tunemake import cli
from tunemake.commands import dag


def test_dvc_yaml_is_compiled_from_the_snakemake_rules():
    """dvc.yaml is generated (`tunemake dag`): the committed file is exactly what the rules compile to."""
    compiled = dag.dvc_yaml(REPO)
    assert (REPO / "dvc.yaml").read_text() == compiled, "dvc.yaml is stale: run `tunemake dag` and commit it"
    stages = yaml.safe_load(compiled)["stages"]
    assert set(stages) == set(STEPS)
    assert stages["train"]["cmd"].startswith("tunemake train ")  # DVC runs the step itself, not the launcher
    assert stages["report"]["deps"][0] == "params.yaml" and "params" not in stages["report"]
    # Only the headlines are metrics (tunemake.evaluation.headline); the full results stay plain outputs
    assert {
        "results/train/headline.json",
        "results/align/headline.json",
        "results/reinforce/headline.json",
        "results/headline.json",
    } == set(yaml.safe_load(compiled)["metrics"])
    assert stages["gate"]["outs"] == ["results/gate.json", "results/headline.json"]


def test_every_rules_code_inputs_are_its_modules_import_closure():
    with dag.workflow(REPO) as api:
        rules = {rule.name: rule for rule in api._workflow.rules if rule.shellcmd}
    for name in STEPS:
        data = {
            "src/tunemake/report/templates/report.html",
            "src/tunemake/report/templates/report.md",
            f"src/tunemake/prompts/{name}.jsonl",
            "src/tunemake/prompts/general.jsonl",
        }
        code = {str(p) for p in rules[name].input.get("code", [])} - data
        assert code == set(dag.code_files(name)), name
        assert "src/tunemake/cli.py" not in code, name
    assert "src/tunemake/data/split.py" in dag.code_files("tokenize")  # tokenize imports SPLITS from it
    assert "src/tunemake/training/methods/qlora.py" in dag.code_files("train")  # through the methods registry
    assert "src/tunemake/data/formats/xlam.py" in dag.code_files("prepare")


def test_a_plain_sub_package_counts_only_for_the_modules_a_step_imports(tmp_path):
    """Only a registry (formats, methods) is a code input whole: a helper package's other modules are not."""
    package = tmp_path / "tunemake" / "helpers"
    package.mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "used.py": "",
        "unused.py": "",
        "../steps/__init__.py": "",
        "../steps/step.py": "from tunemake.helpers.used import x\nfrom tunemake.training.methods import METHODS\n",
        "../training/__init__.py": "",
        "../training/methods/__init__.py": "",
        "../training/methods/lora.py": "",
        "../__init__.py": "",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    files = {Path(f).relative_to(tmp_path).as_posix() for f in dag.code_files("step", src=tmp_path)}
    assert files == {
        "tunemake/__init__.py",
        "tunemake/steps/__init__.py",
        "tunemake/steps/step.py",
        "tunemake/helpers/__init__.py",
        "tunemake/helpers/used.py",
        "tunemake/training/__init__.py",
        "tunemake/training/methods/__init__.py",
        "tunemake/training/methods/lora.py",
    }


def test_no_step_imports_another_step():
    for name in STEPS:
        others = {f"src/tunemake/steps/{other}.py" for other in STEPS if other != name}
        assert not others & set(dag.code_files(name)), name
    assert STEPS == sorted(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])  # a module per rule and stage


def test_no_helper_imports_a_step():
    helpers = [p for p in (REPO / "src" / "tunemake").rglob("*.py") if "steps" not in p.parts]
    assert len(helpers) > 40
    for path in helpers:
        steps = [name for name in dag._tunemake_imports(path) if name.startswith("tunemake.steps")]
        assert not steps, f"{path} imports {steps}: move what it needs into a helper"


def test_the_command_line_lists_every_step_without_importing_it():
    import subprocess
    import sys

    code = "import sys; from tunemake import cli; cli.build_parser(None); print(sorted(m for m in sys.modules if m in ('torch', 'transformers', 'tunemake.steps.train')))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
    assert set(STEPS) | {"sync", "launch", "show-tokens", "dag", "sweep", "serve"} == set(cli.commands())


def test_a_local_base_folder_is_an_input_of_every_step_that_loads_its_weights(workspace):
    """results/base only pins a local base's weights, so the steps that load them must declare the folder."""
    model = yaml.safe_load((workspace / "params.yaml").read_text())["base"]["model"]
    with dag.workflow(workspace) as api:
        rules = api._workflow.rules
    assert {rule.name for rule in rules if model in map(str, rule.input)} == {
        "base",
        "replay",
        "train",
        "merge",
        "suite",
        "baseline",
        "bfcl",
    }


@pytest.mark.slow
def test_snakemake_runs_the_pipeline_then_has_nothing_to_do(workspace):
    """With alignment and reinforcement on (DPO, then GRPO, after SFT, two steps each; the DVC and default-pipeline
    tests run them off) and two quants, one made with the importance matrix and also without it for comparison."""
    edit_params(workspace, align={"enabled": True, "max_steps": 2, "batch_size": 2, "checkpoint_steps": 2})
    grpo = {"max_steps": 2, "batch_size": 4, "num_generations": 2, "max_completion_length": 8, "checkpoint_steps": 2}
    edit_params(workspace, reinforce={"enabled": True, **grpo})
    edit_params(workspace, gguf={"quants": ["Q5_0", "Q4_K_M"], "imatrix_quants": ["Q4_K_M"], "imatrix_compare": True})
    run(["snakemake", "--profile", "local"], workspace)
    for split in ("train", "val", "test"):
        assert (workspace / "results" / "data" / f"{split}.jsonl").stat().st_size > 0
    assert (workspace / "results" / "tokenized" / "dataset" / "dataset_dict.json").is_file()
    assert (workspace / "results" / "train" / "model" / "adapter_config.json").is_file()
    assert (workspace / "results" / "merged" / "model.safetensors").is_file()
    steps = ("tokenize", "train", "merge", "pairs", "align", "reinforce", "gguf", "baseline", "evaluate", "bfcl")
    steps += ("report", "gate")
    for step in steps:
        assert (workspace / "logs" / f"{step}.log").read_text().count(f"tunemake {step} finished") == 1
        # Snakemake's benchmark of the job: seconds and peak memory, one row
        header, row = (workspace / "logs" / "benchmarks" / f"{step}.tsv").read_text().splitlines()
        timing = dict(zip(header.split("\t"), row.split("\t")))
        assert float(timing["s"]) > 0, (step, timing)
        assert step not in ("train", "evaluate") or float(timing["max_rss"]) > 100, (step, timing)  # MB, sampled
    assert (workspace / "results" / "align" / "model" / "model.safetensors").is_file()
    assert (workspace / "results" / "reinforce" / "model" / "model.safetensors").is_file()  # what gguf converted
    assert (
        json.loads((workspace / "results" / "reinforce" / "summary.json").read_text())["start"] == "results/align/model"
    )
    grpo = json.loads((workspace / "results" / "reinforce" / "headline.json").read_text())
    assert set(grpo) == {"grpo_reward_first", "grpo_reward_last", "grpo_kl_last"}, grpo
    metrics = json.loads((workspace / "results" / "eval" / "metrics.json").read_text())
    assert (
        set(metrics["models"])
        == {"base", "sft", "dpo", "tuned", "gguf-F16", "gguf-Q5_0", "gguf-Q4_K_M", "gguf-Q4_K_M-no-imatrix"}
        and metrics["test_rows"] == 4
    )
    # SFT alone, + DPO and + GRPO (tuned, shipped) are scored side by side; every transformers model scores the
    # held-out pairs
    assert metrics["aligned"] and metrics["reinforced"] and metrics["preference_pairs"] == 4
    assert metrics["reinforcement"]["from"] == "dpo" and "tool_calls.exact_match" in metrics["reinforcement"]
    per_pair = [json.loads(line) for line in (workspace / "results" / "eval" / "pairs.jsonl").read_text().splitlines()]
    assert len(per_pair) == 4 and all({"base", "sft", "dpo", "tuned"} <= set(p) for p in per_pair)
    margin = lambda pair, name: pair[name]["chosen"] - pair[name]["rejected"]  # noqa: E731
    for name in ("base", "sft", "dpo", "tuned"):
        preference = metrics["models"][name]["preference"]
        assert preference["pairs"] == 4 and len(preference["ci95"]["margin"]) == 2
        assert preference["accuracy"] == 100 * sum(margin(p, name) > 0 for p in per_pair) / 4, name  # from its pairs
    rose = sum(margin(p, "dpo") > margin(p, "sft") for p in per_pair)
    assert metrics["alignment"]["pairs"] == 4 and metrics["alignment"]["margins_rose"] == rose  # DPO vs SFT, paired
    assert all(len(m["ci95"]["tool_calls.exact_match"]) == 2 for m in metrics["models"].values())
    assert all(m["degenerate_rate"] in (0, 25, 50, 75, 100) for m in metrics["models"].values())  # of 4 rows, in %
    # No model answers twice: the tuned model's answers are its F16 GGUF's, the base's its own 16-bit GGUF's;
    # transformers answers the 2 timed rows of each, which check the engines against each other
    checks = metrics["engine_check"]
    assert {name: check["answers_from"] for name, check in checks.items()} == {"base": "gguf-base", "tuned": "gguf-F16"}
    assert all(check["rows"] == 2 for check in checks.values()) and "gguf-base" not in metrics["models"]
    # The regression suite: 4 prompts, each under one system turn in turn, answered by the base and the shipped GGUF;
    # drift for the tuned model
    general = {name: m["general"] for name, m in metrics["models"].items() if "general" in m}
    assert set(general) == {"base", "tuned", "gguf-Q5_0"} and all(g["conversations"] == 4 for g in general.values())
    assert all(general[m]["degenerate_rate"] in (0, 25, 50, 75, 100) for m in ("base", "gguf-Q5_0"))  # of 4, in %
    assert len(general["tuned"]["ci95"]["drift"]) == 2  # two tiny LoRA steps barely move it: tests/test_general.py
    gate = json.loads((workspace / "results" / "gate.json").read_text())
    assert gate["verdict"] == "abort"  # 2 steps of a random model learn nothing
    assert "gain over base: 0 [95% interval 0 to 0] (needs >= 10, interval above 0) FAILED" in gate["reasons"]
    assert any(c["check"].startswith("alignment drop: sft minus tuned") for c in gate["checks"])
    assert f"rose on {rose} of 4" in (workspace / "results" / "report" / "report.md").read_text()
    restraint = ["no call where none fits: base minus Q5_0, our test rows"] if metrics["no_call_rows"] else []
    assert [c["check"] for c in gate["checks"] if c.get("regression")] == [
        "degenerate general answers, Q5_0 minus base",
        "checkable general answers, base minus Q5_0",
        "drift: tuned loss on the base's general answers minus the base's (nats/token)",
        *restraint,
        "BFCL irrelevance: base minus Q5_0",
    ]
    # BFCL: its rows (2 per category here) asked of base, tuned and shipped through the server, its checker scoring
    scored = json.loads((workspace / "results" / "bfcl" / "summary.json").read_text())
    assert set(scored["categories"]) == {"simple_python", "multiple", "parallel", "irrelevance"}
    for category in scored["categories"].values():
        assert {m: s["total"] for m, s in category["models"].items()} == {"base": 2, "tuned": 2, "shipped": 2}
        assert set(category["minus_base"]) == {"tuned", "shipped"}
    bfcl_rows = (workspace / "results" / "bfcl" / "answers.jsonl").read_text().splitlines()
    assert len(bfcl_rows) == 8 and all({"base", "tuned", "shipped"} <= set(json.loads(r)) for r in bfcl_rows)
    # A random base rambles to the suite's cap: too few sound answers to judge drift on, and the report says why
    name = "drift: tuned loss on the base's general answers minus the base's (nats/token)"
    drift = next(c for c in gate["checks"] if c["check"] == name)
    assert drift["status"] == "not applicable" and drift["passed"] and drift["value"] is None
    assert gate["base_answers"]["conversations"] == 4 and gate["base_answers"]["mostly_broken"]
    assert any(r.startswith(f"{name}: not applicable, the base answered only") for r in gate["reasons"])
    report_md = (workspace / "results" / "report" / "report.md").read_text()
    assert (
        "general conversations soundly" in report_md and "it is a pretrained model, or a poorly chosen one" in report_md
    )
    page = (workspace / "results" / "report" / "index.html").read_text()
    assert "it is a pretrained model, or a poorly chosen one" in page
    assert f"{gate['verdict'].upper()}</span>" in page
    assert "answers are those of gguf-base" in page and "answers are those of gguf-F16" in page
    # Every GGUF answered through llama-server, as an OpenAI client asks it: tools in, parsed tool_calls scored
    assert metrics["answered_by"].startswith("llama-server --jinja")
    for name in ("base", "tuned", "gguf-F16", "gguf-Q5_0"):
        assert 0 <= metrics["models"][name]["answered_with_tool_calls"] <= metrics["tool_call_rows"]
    assert "Every GGUF answered through llama-server --jinja" in page
    assert "Berkeley Function Calling Leaderboard" in page and "no call where none fits (%)" in page
    assert "prefers the chosen answer (%)" in page
    assert_opens_offline_with_plots(workspace / "results" / "report" / "index.html")
    assert "DPO rewards and margins" in page and "GRPO rewards and KL" in page
    run(["snakemake", "--report", "results/snakemake-report.zip"], workspace)  # Snakemake's own report of the run

    again = run(["snakemake", "--profile", "local", "-n"], workspace)
    assert "Nothing to be done" in again.stdout + again.stderr

    # Each parameter re-runs its step and what follows, nothing before it: an export or eval setting never retrains.
    after_merge = {"gguf", "evaluate", "bfcl", "report", "gate"}
    assert planned_jobs(workspace, merge={"dtype": "bfloat16"}) == {"merge", "align", "reinforce"} | after_merge
    # An alignment setting or preference pair re-runs DPO and what follows, never SFT
    assert planned_jobs(workspace, align={"beta": 0.2}) == {"align", "reinforce"} | after_merge
    assert (
        planned_after_editing(workspace, "data/raw/preferences.jsonl")
        == {"pairs", "align", "reinforce", "baseline"} | after_merge
    )
    # An RL setting or a reward of the user's re-runs GRPO and what follows, never SFT or DPO
    assert planned_jobs(workspace, reinforce={"beta": 0.1}) == {"reinforce"} | after_merge
    assert planned_jobs(workspace, reinforce={"enabled": False}) == {"reinforce"} | after_merge
    assert planned_jobs(workspace, gguf={"quants": ["Q8_0"], "imatrix_quants": []}) == after_merge
    assert planned_jobs(workspace, gguf={"imatrix_tokens": 64}) == after_merge
    assert planned_jobs(workspace, eval={"max_new_tokens": 4}) == {"baseline", "evaluate", "report", "gate"}
    assert planned_jobs(workspace, gate={"min_score": 50}) == {"report", "gate"}
    assert planned_jobs(workspace, bfcl={"rows": 1}) == {"bfcl", "report", "gate"}
    # The suite's base answers are made once: a suite setting re-runs the suite and the evaluation, never training.
    assert planned_jobs(workspace, suite={"max_new_tokens": 4}) == {"suite", "baseline", "evaluate", "report", "gate"}
    assert (
        planned_jobs(workspace, replay={"max_new_tokens": 4})
        == {"replay", "prepare", "pairs", "tokenize", "train", "merge", "align", "reinforce", "baseline"} | after_merge
    )
    assert (
        planned_jobs(workspace, tokenize={"max_length": 256})
        == {"tokenize", "train", "merge", "align", "reinforce", "baseline"} | after_merge
    )

    # Code inputs are each step's import closure: a help text in cli.py re-runs nothing; split.py (which prepare and
    # tokenize import) re-runs both and what follows.
    assert planned_after_editing(workspace, "src/tunemake/cli.py") == set()
    assert (
        planned_after_editing(workspace, "src/tunemake/data/split.py")
        == {"prepare", "pairs", "tokenize", "train", "merge", "align", "reinforce", "baseline"} | after_merge
    )
    # A section's code is read only by the steps that load that section: a train field's description re-runs train
    # and what follows, as editing the field's value does; no data step, suite or baseline.
    train_code = planned_after_editing(workspace, "src/tunemake/params/train.py")
    assert (
        train_code
        == planned_jobs(workspace, train={"seed": 1})
        == {"train", "merge", "align", "reinforce"} | after_merge
    )


def assert_opens_offline_with_plots(html: Path) -> None:
    """Headless Chromium opens the report with every request outside the file refused, and every plot decodes."""
    import shutil

    from playwright.sync_api import sync_playwright

    browser_path = shutil.which("chromium")
    assert browser_path, "the report check needs Chromium: ./scripts/setup.sh --test installs it"
    outside = []

    def only_local(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.route("**/*", only_local)
        page.goto(html.as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "all => all.map(i => [i.alt, i.complete, i.naturalWidth])")
        headings = page.eval_on_selector_all("h2", "all => all.map(h => h.textContent)")
        browser.close()
    assert outside == []
    plots = ["scores by model", "training and validation loss"]
    plots += ["DPO rewards and margins"] if "Alignment (DPO)" in headings else []
    plots += ["GRPO rewards and KL"] if "Reinforcement (GRPO)" in headings else []
    assert [alt for alt, _, _ in images] == plots
    assert all(complete and width > 300 for _, complete, width in images), images
    assert any(h.startswith("Held-out scores") for h in headings) and "Sample answers" in headings
    assert "What the fine-tune broke: general prompts no training row shares" in headings


def edit_params(workspace: Path, **sections) -> None:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def planned_jobs(workspace: Path, **sections) -> set[str]:
    """The rules Snakemake would run after editing params.yaml (the edit is undone afterwards)."""
    original = (workspace / "params.yaml").read_text()
    edit_params(workspace, **sections)
    try:
        return dag.planned(workspace)
    finally:
        (workspace / "params.yaml").write_text(original)


def planned_after_editing(workspace: Path, source: str) -> set[str]:
    """The rules Snakemake would run after a source file is edited (Snakemake compares content, not only times);
    the edit is undone afterwards."""
    path = workspace / source
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        return dag.planned(workspace)
    finally:
        path.write_text(original)


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_then_is_up_to_date(workspace):
    run(["dvc", "repro"], workspace)
    assert (workspace / "results" / "tokenized" / "dataset" / "dataset_dict.json").is_file()
    assert (workspace / "dvc.lock").is_file()
    status = run(["dvc", "status"], workspace)
    assert "Data and pipelines are up to date" in status.stdout
    again = run(["dvc", "repro"], workspace)
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    plan = run(["snakemake", "--profile", "local", "-n"], workspace)
    assert "Nothing to be done" in plan.stdout + plan.stderr  # DVC ran the steps in order: Snakemake agrees

    assert json.loads((workspace / "results" / "eval" / "metrics.json").read_text())["test_rows"] == 4
    shown = run(["dvc", "metrics", "show", "--json"], workspace).stdout
    assert "tool_calls_em_shipped" in shown and "verdict" in shown

    # An export parameter makes only merge stale, an eval one only evaluate: DVC would not retrain either. (report
    # prints every parameter, so params.yaml is one of its inputs.)
    original = (workspace / "params.yaml").read_text()
    edit_params(workspace, merge={"dtype": "bfloat16"})
    # (align and reinforce merge their adapters in merge.dtype too)
    assert set(json.loads(run(["dvc", "status", "--json"], workspace).stdout)) == {
        "merge",
        "align",
        "reinforce",
        "report",
    }
    (workspace / "params.yaml").write_text(original)
    edit_params(workspace, eval={"max_new_tokens": 4})
    assert set(json.loads(run(["dvc", "status", "--json"], workspace).stdout)) == {"baseline", "evaluate", "report"}
    (workspace / "params.yaml").write_text(original)
    edit_params(workspace, align={"beta": 0.2})  # alignment is off here: DVC re-runs only align, never SFT
    assert set(json.loads(run(["dvc", "status", "--json"], workspace).stdout)) == {"align", "report"}
    (workspace / "params.yaml").write_text(original)

    # A Snakemake sweep over two ranks beside the run DVC made: params.yaml's r=16 is that run, r=4 runs train to
    # gate under a folder of its own, and the report shows both points. Nothing before training runs again.
    swept = run(["snakemake", "--profile", "local", "--config", "sweep=train.lora.r:4,16"], workspace)
    jobs = [job for job in re.findall(r"^(?:local)?rule (\w+):", swept.stderr, flags=re.M) if job != "all"]
    assert sorted(jobs) == [
        "align", "bfcl", "evaluate", "gate", "gguf", "merge", "reinforce", "report", "sweep", "train"
    ], jobs  # fmt: skip
    point = workspace / "results" / "sweep" / "train.lora.r=4"
    assert json.loads((point / "train" / "model" / "adapter_config.json").read_text())["r"] == 4
    assert (point / "gguf" / "model-Q5_0.gguf").is_file() and (workspace / "logs" / "sweep" / "train.lora.r=4").is_dir()
    table = json.loads((workspace / "results" / "sweep" / "train.lora.r" / "sweep.json").read_text())
    rows = {row["train.lora.r"]: row for row in table["rows"]}
    assert list(rows) == [4, 16] and rows[16]["run"] == "results" and rows[4]["run"] == "results/sweep/train.lora.r=4"
    # LoRA's parameters grow linearly with the rank; each score carries its interval and its paired difference, under
    # the headline names `dvc exp show` lists
    assert rows[16]["trainable_params"] == 4 * rows[4]["trainable_params"]
    for row in rows.values():
        assert row["tool_calls_em_tuned_low"] <= row["tool_calls_em_tuned"] <= row["tool_calls_em_tuned_high"]
        assert len(row["tuned_minus_reference_ci95"]) == 2 and row["verdict"] and "degenerate_vs_base" in row
    page = (workspace / "results" / "report" / "index.html").read_text()
    assert "Sweep: train.lora.r" in page and "16 (params.yaml)" in page and "results/sweep/train.lora.r=4" in page
    assert '<img alt="sweep" src="data:image/png;base64,' in page
    again = run(["snakemake", "--profile", "local", "-n", "--config", "sweep=train.lora.r:4,16"], workspace)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_default_pipeline_on_the_bundled_smollm2(workspace):
    """The README's main command, on the real default model and data (the GGUF is dequantised for real)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(max_steps=2, eval_steps=2)  # two real LoRA steps; the full epoch is measured, not tested
    params["gguf"].update(quants=["Q8_0"], imatrix_quants=[])
    params["eval"].update(limit=3, max_new_tokens=16, speed_rows=1)
    params["suite"].update(limit=2, max_new_tokens=16)
    params["replay"].update(limit=6, max_new_tokens=48)
    params["bfcl"].update(rows=2, max_new_tokens=32)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["snakemake", "--profile", "local"], workspace)
    manifest = yaml.safe_load((workspace / "results" / "base" / "manifest.json").read_text())
    assert manifest["kind"] == "gguf" and manifest["parameters"] == 134_515_008
    stats = yaml.safe_load((workspace / "results" / "tokenized" / "token_stats.json").read_text())
    assert all(s["rows"] > 0 and s["trainable_fraction"] > 0.05 for s in stats["splits"].values())
    summary = json.loads((workspace / "results" / "train" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["parameters"]["total"] > 134_000_000
    assert (workspace / "results" / "merged" / "model.safetensors").stat().st_size > 500_000_000  # float32 135M
    sizes = json.loads((workspace / "results" / "gguf" / "sizes.json").read_text())
    assert {name: entry["parameters"] for name, entry in sizes["files"].items()} == {
        "F16": 134_515_008,
        "Q8_0": 134_515_008,
    }
    assert sizes["files"]["Q8_0"]["stop_tokens"] == ["<|im_end|>"]  # and its template rendered training's tokens
    assert_opens_offline_with_plots(workspace / "results" / "report" / "index.html")
