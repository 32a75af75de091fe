"""The GPU comparison benchmark runs end to end on a CPU (a tiny shape), so it is ready when a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from tunemake.data.chat import answer_kind


@pytest.mark.slow  # about a minute: two tiny trainings and their set-up
def test_tunemake_train_and_the_plain_trl_baseline_train_the_same_steps_and_report_their_throughput():
    out = subprocess.run(
        [sys.executable, "benchmarks/train_vs_trl.py", "--shape", "tiny", "--steps", "3", "--warmup", "1"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out)  # stdout is the JSON alone
    assert result["device"] == "cpu" and result["settings"]["max_steps"] == 3
    # MFU against the peak of the dtype training computes in: a CPU without AVX-512 BF16 trains in fp32
    assert result["matmul_peak_dtype"] == {"bf16": "bfloat16"}.get(result["tunemake"]["precision"], "float32")
    for name in ("tunemake", "trl_peft"):
        run = result[name]
        assert run["steps"] == 3 and run["tokens_per_second"] > 0, (name, run)
        mfu = run["tokens_per_second"] * 4 * result["parameters_per_token"] / 1e9 / result["matmul_peak_gflops"]
        assert abs(run["mfu"] - mfu) < 1e-3 and run["mfu"] > 0  # tokens/s x 4N over the peak (printed to 0.1)
        assert run["peak_memory_mb"]["rss"] > 0
    assert result["speedup"] == round(
        result["tunemake"]["tokens_per_second"] / result["trl_peft"]["tokens_per_second"], 3
    )


def test_call_decision_reports_each_kind_of_tool_row_with_its_call_probability_and_state(sft):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/call_decision.py"), "--model", "results/merged"]
        + ["--data", "results/data", "--splits", "train", "test"],
        cwd=sft,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out)
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (sft / "results/data" / f"{split}.jsonl").read_text().splitlines()]
        kinds = [answer_kind(r) for r in rows if r.get("tools")]
        summaries = {kind: result[split][kind] for kind in ("tool_call", "no_call") if kind in result[split]}
        assert {kind: s["rows"] for kind, s in summaries.items()} == {kind: kinds.count(kind) for kind in set(kinds)}
        for kind, summary in summaries.items():
            assert 0 <= summary["right"] <= summary["rows"]
            assert 0 <= result[split]["probe_right"][kind] <= summary["rows"]
            quartiles = summary["p_call_quartiles"]
            assert 0 <= quartiles[0] <= quartiles[1] <= quartiles[2] <= 1 and 0 <= summary["mean_p_call"] <= 1
        # the shared part and the per-row part are the two sides of a triangle whose third is each row's state
        state = result[split]["state"]
        assert 0 < state["shared_norm"] <= state["norm"] <= state["shared_norm"] + state["per_row_norm"] + 0.02
    train = result["train"]
    assert train["no_call"]["rows"] > 0 and train["tool_call"]["rows"] > 0 and result["probe_fitted_on"] == "train"
    # on the rows it was fitted on, the probe beats answering every row with the commoner kind
    counts = [train[kind]["rows"] for kind in ("tool_call", "no_call")]
    assert sum(train["probe_right"].values()) > max(counts), train
