"""align (DPO) on the tiny model, from the real merged SFT model: its outputs, a reference that is the SFT model,
resume after kill -9, and the pipeline unchanged when it is off."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, run
from tunemake.models.weights import final_model

# Seconds per run; long enough to checkpoint and resume mid-run.
# plain DPO (the default adds the sft term): its loss at step 0 is exactly log 2
QUICK = {
    "enabled": True,
    "loss": ["sigmoid"],
    "max_steps": 4,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "checkpoint_steps": 2,
}


def align_cmd(sft: Path, folder: Path, **overrides) -> list[str]:
    params = yaml.safe_load((sft / "params.yaml").read_text())
    params["align"] = {**QUICK, **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return ["tunemake", "align", "--params", str(folder / "params.yaml"), "--merged", str(sft / "results/merged")] + [
        "--pairs",
        str(sft / "results/pairs"),
        "--out",
        str(folder / "out"),
        "--checkpoints",
        str(folder / "checkpoints"),
        "--log-file",
        str(folder / "align.log"),
    ]


def losses(folder: Path) -> list[float]:
    return [row["loss"] for row in json.loads((folder / "out" / "history.json").read_text())["train"]]


@pytest.fixture(scope="module")
def aligned(sft, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("aligned")
    run(align_cmd(sft, folder), sft)
    return folder


def test_align_writes_the_merged_dpo_model_its_adapter_and_reward_curves(sft, aligned):
    out = aligned / "out"
    assert (out / "model" / "model.safetensors").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    assert final_model(sft / "results/merged", out) == out / "model"
    history = json.loads((out / "history.json").read_text())
    assert len(history["train"]) == 4
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert all(key in row for row in history["train"] + history["eval"]), key
    header = (out / "plots" / "train.tsv").read_text().splitlines()[0].split("\t")
    assert "rewards/margins" in header
    summary = json.loads((out / "summary.json").read_text())
    assert summary["enabled"] and summary["steps"] == 4 and summary["pairs"]["train"] > 0
    assert "(the SFT model)" in summary["reference"]
    headline = json.loads((out / "headline.json").read_text())  # what dvc exp show lists: the held-out end
    assert headline == {
        "dpo_val_margin": round(history["eval"][-1]["rewards/margins"], 4),
        "dpo_val_accuracy": round(history["eval"][-1]["rewards/accuracies"], 4),
    }
    assert "margin=" in (aligned / "align.log").read_text()  # the progress line
    assert not (aligned / "checkpoints").exists()


def test_at_step_0_the_reference_is_the_sft_model_itself(aligned):
    """The val pass before training: policy (the SFT model + a zero-initialised adapter) and reference give equal
    log-probs, so every reward and margin is exactly 0 and the loss is log 2. Had the reference been the pre-SFT base
    (LLaMA-Factory #8459), they would differ: the SFT model here is 2 steps at lr 5e-3 away from it."""
    start = json.loads((aligned / "out" / "history.json").read_text())["eval"][0]
    assert start["step"] == 0
    assert start["rewards/chosen"] == 0 and start["rewards/rejected"] == 0 and start["rewards/margins"] == 0
    assert start["val_loss"] == pytest.approx(0.693147, abs=1e-5)
    end = json.loads((aligned / "out" / "history.json").read_text())["eval"][-1]
    assert end["rewards/margins"] != 0  # and training moved away from it


def test_killed_align_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(sft, aligned, tmp_path):
    cmd = align_cmd(sft, tmp_path)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(REPO / "src")  # this checkout's code, wherever the environment's install points
    process = subprocess.Popen(cmd, cwd=sft, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert process.poll() is None, f"align ended before its first checkpoint:\n{process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no chance to clean up (and no run left behind when the wait fails)
        process.wait()
    assert not (tmp_path / "out").exists()
    run(cmd, sft)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 2 <= summary["resumed_from_step"] < 4
    # a resumed run re-reads its state from disk; its float32 sums may round a little apart from the uninterrupted
    # run (1.4e-4 seen on a loaded 2-core EPYC)
    assert losses(tmp_path) == pytest.approx(losses(aligned), abs=5e-4)


def test_align_off_says_so_and_the_pipeline_ships_the_sft_model(sft, tmp_path):
    run(align_cmd(sft, tmp_path, enabled=False), sft)
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == {"enabled": False}
    assert json.loads((tmp_path / "out" / "headline.json").read_text()) == {}  # no DPO columns in dvc exp show
    assert not (tmp_path / "out" / "model").exists()
    assert final_model(sft / "results/merged", tmp_path / "out") == sft / "results/merged"
    # off, the step costs no torch import (12 s of every pipeline run before)
    code = "import sys; from tunemake.steps import align; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert subprocess.run([BIN / "python", "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
