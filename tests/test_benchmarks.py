"""The GPU comparison benchmark runs end to end on a CPU (a tiny shape), so it is ready when a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


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
