"""Versioning and experiments: which DVC stages each parameter reruns, `tunemake sync` between the two front doors,
and a push/pull round trip into a fresh clone that restores every result byte for byte with nothing left to run."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, STEPS, run

SNAKEMAKE_IDLE = "Nothing to be done"


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def snakemake_plan(root: Path) -> str:
    result = run(["snakemake", "--profile", "local", "-n"], root)
    return result.stdout + result.stderr


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "results").rglob("*"))
        if p.is_file() and p.name != ".snakemake_timestamp"
    }


def leaves(tree: dict) -> list[str]:
    """The columns `dvc exp show` makes of a metrics file: its leaves, dotted."""
    return [
        f"{key}.{leaf}" if isinstance(value, dict) else key
        for key, value in tree.items()
        for leaf in (leaves(value) if isinstance(value, dict) else [None])
    ]


@pytest.mark.slow
def test_each_parameter_reruns_its_stage_and_what_follows_and_exp_show_compares_them(workspace):
    # with dvclive on (train.report_to), its curves are in each experiment too
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["report_to"] = ["dvclive"]
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    baseline = run(["dvc", "exp", "run", "--name", "baseline"], workspace).stdout
    assert stages_run(baseline) == set(STEPS)
    # An eval setting never retrains: the base's and the tuned model's evaluation, the report and the gate.
    more_tokens = run(["dvc", "exp", "run", "--name", "tokens4", "-S", "eval.max_new_tokens=4"], workspace).stdout
    assert stages_run(more_tokens) == {"baseline", "evaluate", "report", "gate"}
    # A LoRA rank, queued and run as docs/experiments.md shows, retrains, and everything after train follows; the
    # data, tokens and the base's scores are reused.
    run(["dvc", "exp", "run", "--queue", "--name", "rank8", "-S", "train.lora.r=8"], workspace)
    rank = run(["dvc", "exp", "run", "--run-all"], workspace).stdout
    retrained = {"train", "merge", "align", "reinforce", "gguf", "evaluate", "bfcl", "report", "gate"}
    assert stages_run(rank) == retrained, rank[-3000:]

    # After DVC's runs, Snakemake still holds its own view: sync brings it level without running anything.
    run(["tunemake", "sync"], workspace)
    assert SNAKEMAKE_IDLE in snakemake_plan(workspace)

    shown = json.loads(run(["dvc", "exp", "show", "--json"], workspace).stdout)
    experiments = {
        rev["name"]: rev["data"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp.get("revs") or []
    }
    assert set(experiments) == {"baseline", "tokens4", "rank8"}
    ranks = {name: data["params"]["params.yaml"]["data"]["train"]["lora"]["r"] for name, data in experiments.items()}
    assert ranks == {"baseline": 16, "tokens4": 16, "rank8": 8}
    declared = yaml.safe_load((workspace / "dvc.yaml").read_text())["metrics"]
    for data in experiments.values():
        # The pipeline's metrics are its headlines: a few columns, named for what they are (dvclive's, on here, are
        # its own file)
        metrics = {path: found["data"] for path, found in data["metrics"].items() if path in declared}
        columns = [column for found in metrics.values() for column in leaves(found)]
        assert len(columns) <= 15 and len(set(columns)) == len(columns), columns
        gated = metrics["results/headline.json"]
        assert gated["verdict"] == "abort" and gated["shipped_quant"] == "Q5_0"  # 2 steps of a random model
        assert 0 <= gated["tool_calls_em_shipped_low"] <= gated["tool_calls_em_shipped"] <= 100
        assert -100 <= gated["degenerate_vs_base"] <= 100
        trained = metrics["results/train/headline.json"]
        assert trained["best_val_loss"] > 0 and trained["train_minutes"] > 0
    assert (
        experiments["rank8"]["metrics"]["results/train/headline.json"]["data"]["trainable_params"] * 2
        == experiments["baseline"]["metrics"]["results/train/headline.json"]["data"]["trainable_params"]
    )
    # dvclive's files are the train run's side files, not DVC outputs: the experiments that trained carry them
    trained = {name for name, data in experiments.items() if "dvclive/train/metrics.json" in data["metrics"]}
    assert trained == {"baseline", "rank8"}
    assert experiments["rank8"]["metrics"]["dvclive/train/metrics.json"]["data"]["eval"]["loss"] > 0
    plots = json.loads(run(["dvc", "plots", "show", "--json"], workspace).stdout)["data"]
    assert "dvclive/train/plots/metrics/loss.tsv" in plots and "results/train/plots/train.tsv" in plots

    # Two experiments' loss curves side by side (docs/experiments.md): one HTML page, each curve with both runs
    diff = run(["dvc", "plots", "diff", "baseline", "rank8", "--out", "plots-diff"], workspace)
    page = (workspace / "plots-diff" / "index.html").read_text()
    assert "plots-diff" in diff.stdout and "baseline" in page and "rank8" in page
    drawn = json.loads(run(["dvc", "plots", "diff", "baseline", "rank8", "--json"], workspace).stdout)["data"]
    for curve in ("results/train/plots/train.tsv", "results/train/plots/eval.tsv"):
        assert {rev for plot in drawn[curve] for rev in plot["revisions"]} == {"baseline", "rank8"}, curve
        assert f"{curve}" in page

    # The sweep plot reads the same headline: one point per rank (the newest run of each), trainable parameters by rank.
    plot = run([sys.executable, str(REPO / "scripts" / "plot_sweep.py"), "--out", "sweep.png"], workspace)
    points = {row["train.lora.r"]: row for row in map(json.loads, plot.stdout.splitlines())}
    assert set(points) == {8, 16} and points[8]["trainable_params"] < points[16]["trainable_params"]
    assert points[8]["verdict"] == "abort" and points[8]["tool_calls_em_tuned_low"] <= points[8]["tool_calls_em_tuned"]
    assert (workspace / "sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_front_doors_agree_after_a_run_a_checkout_and_a_pull_into_a_fresh_clone_and_sync_refuses_stale_results(
    workspace, tmp_path
):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], workspace)

    # After a Snakemake run, sync records it in DVC without running anything.
    run(["snakemake", "--profile", "local"], workspace)
    assert "recorded in dvc.lock" in run(["tunemake", "sync"], workspace).stderr
    assert "Data and pipelines are up to date" in run(["dvc", "status"], workspace).stdout
    assert stages_run(run(["dvc", "repro"], workspace).stdout) == set()
    run(["git", "add", "dvc.lock"], workspace)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "results"], workspace)
    before = files(workspace)

    # A checkout writes the files with new times in any order; when results/base comes last, Snakemake alone would
    # retrain...
    shutil.rmtree(workspace / "results")
    run(["dvc", "checkout"], workspace)
    os.utime(workspace / "results" / "base", (time.time() + 5, time.time() + 5))
    assert "rule train:" in snakemake_plan(workspace)
    # ...sync sees DVC vouch for every result and re-stamps them, so neither tool reruns anything.
    assert "every result matches dvc.lock" in run(["tunemake", "sync"], workspace).stderr
    assert SNAKEMAKE_IDLE in snakemake_plan(workspace)
    assert stages_run(run(["dvc", "repro"], workspace).stdout) == set()
    assert files(workspace) == before

    # push, then pull into a fresh clone: every result comes back byte for byte, and nothing is left to run.
    run(["dvc", "push"], workspace)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], clone)
    run(["dvc", "pull"], clone)
    assert files(clone) == before
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone).stdout
    run(["tunemake", "sync"], clone)
    plan = snakemake_plan(clone)
    assert SNAKEMAKE_IDLE in plan and "missing provenance" not in plan  # every rule's parameters are on record again
    assert stages_run(run(["dvc", "repro"], clone).stdout) == set()

    # An edited parameter leaves results stale for both tools: sync refuses to vouch for them.
    params = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(params.replace("max_new_tokens: 8", "max_new_tokens: 6"))
    result = run(["tunemake", "sync"], clone, check=False)
    assert result.returncode == 1
    assert "out of date for both tools" in result.stderr and "evaluate" in result.stderr
