"""The slurm profile against a real one-node SLURM cluster (scripts/slurm_cluster.sh: slurm-wlm + munge, as root)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, run

pytestmark = pytest.mark.slow  # one cluster for the file (pyproject: --dist loadfile)


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root (CI runs as root)")
    subprocess.run([REPO / "scripts" / "slurm_cluster.sh", "start"], check=True, capture_output=True, text=True)


def fit_profile_to_this_machine(workspace: Path, train: dict | None = None) -> None:
    """The committed profile, with its GPU, memory and core requests scaled to a CPU-only node with 2 cores, and job
    states read with squeue (the test cluster keeps no accounting database)."""
    path = workspace / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile.update(
        {
            "slurm-no-account": True,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 1,
            "seconds-between-status-checks": 2,
            "latency-wait": 5,
        }
    )
    profile["default-resources"].update(mem_mb=3000)
    for rule in profile["set-resources"].values():
        rule.update(gpu=0, mem_mb=3000)
    profile["max-threads"] = 1  # one core a job: --cpus-per-task=1
    profile.pop("set-threads")
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    if train:
        params = yaml.safe_load((workspace / "params.yaml").read_text())
        params["train"].update(train)
        (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def slurm_jobs(workspace: Path) -> dict[str, list[str]]:
    """The SLURM job ids of each rule submitted from this workspace (the executor comments a job with its rule)."""
    out = subprocess.run(["squeue", "-t", "all", "-h", "-o", "%i|%k|%Z"], check=True, capture_output=True, text=True)
    jobs: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        job_id, comment, workdir = line.split("|")
        if Path(workdir) == workspace and comment.startswith("rule_"):
            jobs.setdefault(comment.removeprefix("rule_"), []).append(job_id)
    return jobs


def scontrol(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], check=True, capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def test_the_pipeline_runs_through_sbatch_with_the_slurm_profile(slurm_cluster, workspace):
    fit_profile_to_this_machine(workspace)
    run(["snakemake", "--profile", "slurm"], workspace)
    assert json.loads((workspace / "results" / "gate.json").read_text())["verdict"] == "abort"  # 2 steps learn nothing
    jobs = slurm_jobs(workspace)
    assert sorted(jobs) == [
        "base",
        "baseline",
        "bfcl",
        "evaluate",
        "gguf",
        "merge",
        "replay",
        "suite",
        "train",
    ]  # the cheap localrules ran in place
    for rule, (job_id,) in jobs.items():
        job = scontrol(job_id)
        assert job["JobState"] == "COMPLETED" and job["BatchFlag"] == "1", (rule, job)
        assert job["Requeue"] == "1" and job["Partition"] == "debug", (rule, job)
    train_job = scontrol(jobs["train"][0])
    assert train_job["TimeLimit"] == "12:00:00"  # the profile's train runtime: 720 minutes
    assert run(["snakemake", "--profile", "slurm", "-n"], workspace).stdout.count("rule ") == 0


def test_a_preempted_training_job_is_requeued_and_resumes_from_its_checkpoint(slurm_cluster, workspace):
    fit_profile_to_this_machine(workspace, train={"max_steps": 40, "checkpoint_steps": 5, "eval_steps": 40})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    snakemake = subprocess.Popen(
        ["snakemake", "--profile", "slurm", "results/train"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 600
    while not list(workspace.glob("checkpoints/train/checkpoint-*/trainer_state.json")):
        assert snakemake.poll() is None and time.time() < deadline, snakemake.stdout.read()[-4000:]
        time.sleep(1)
    (job_id,) = slurm_jobs(workspace)["train"]
    # What a preempting scheduler does: SIGTERM to the job's processes, then the job goes back to the queue.
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    while scontrol(job_id)["JobState"] != "PENDING":
        assert time.time() < deadline, scontrol(job_id)
        time.sleep(1)
    # SLURM holds a requeued job back for about two minutes (BeginTime); start it now to keep the test short.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    output, _ = snakemake.communicate(timeout=900)
    assert snakemake.returncode == 0, output[-4000:]
    job = scontrol(job_id)
    assert job["JobState"] == "COMPLETED" and job["Restarts"] == "1", job
    summary = json.loads((workspace / "results" / "train" / "summary.json").read_text())
    assert summary["steps"] == 40
    assert 5 <= summary["resumed_from_step"] < 40, summary
    assert "resuming from" in (workspace / "logs" / "train.log").read_text()


def test_several_nodes_start_one_torchrun_per_node_with_srun(slurm_cluster):
    from tunemake.commands import launch

    step = ["tunemake", "train", "--params", "params.yaml"]
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": subprocess.check_output(["hostname", "-s"], text=True).strip()}
    argv = launch.command(step, 2, env=env, gpus=8)
    assert argv[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert f"--rdzv-endpoint={env['SLURM_JOB_NODELIST']}:{launch.RDZV_PORT}" in argv  # the first host, via scontrol
    assert "--nproc-per-node=8" in argv and "--rdzv-id=42" in argv and argv[-len(step) :] == step
    assert argv[5:] == launch.torchrun(2, 8, env["SLURM_JOB_NODELIST"], launch.RDZV_PORT, "42", step)  # as k8s pods
    assert "--nproc-per-node=1" in launch.command(step, 2, env=env, gpus=0)  # a CPU-only node: one worker
