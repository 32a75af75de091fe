"""Two nodes for real: a two-node SLURM cluster on this machine (scripts/slurm_nodes.sh: slurmctld and two slurmd,
each in its own network and UTS namespace), training the tiny model across both through `snakemake --profile
slurm` (srun + torchrun, c10d rendezvous, DDP over gloo between the hosts), a node lost mid-run, and the torchrun
command of the PyTorchJob's pods run across the same two namespaces. docs/clusters.md "Two nodes for real"."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from test_slurm import fit_profile_to_this_machine
from test_train import make_inputs

from conftest import BIN, REPO

pytestmark = pytest.mark.slow  # one two-node cluster for the file (pyproject: --dist loadfile)

SCRIPT = REPO / "scripts" / "slurm_nodes.sh"
NETNS = ("tm-ctl", "tm-node1", "tm-node2")
# Lowered from 600 s so that a node that never comes, or stops answering, fails the run within a minute here.
TIMEOUTS = {"TUNEMAKE_DDP_TIMEOUT": "60", "TUNEMAKE_RDZV_TIMEOUT": "60"}
# Two nodes x 2 rows per step against one process x 4 rows, float32: the all-reduce sums in another order.
TOLERANCE = 1e-4
TRAIN = {
    "batch_size": 2,
    "gradient_accumulation": 1,
    "group_by_length": False,  # random order: both runs see the same rows at each step
    "precision": "fp32",  # auto measures each process's matmul rate: two nodes could choose differently
    "learning_rate": 5e-3,
}


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in NETNS]


@pytest.fixture(scope="module")
def two_nodes():
    """The cluster's client environment; stopped afterwards, whatever the tests did, and checked to be gone."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and the SLURM daemons need root (CI runs as root)")
    try:
        subprocess.run([SCRIPT, "start"], check=True, capture_output=True, text=True)
        conf = subprocess.run([SCRIPT, "conf"], check=True, capture_output=True, text=True).stdout.strip()
        yield {
            **os.environ,
            **TIMEOUTS,
            "SLURM_CONF": conf,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
    finally:
        subprocess.run([SCRIPT, "stop"], check=True)
        assert namespaces() == []
        daemons = subprocess.run(["pgrep", "-l", "^tm-(slurm|munge)"], capture_output=True, text=True).stdout
        assert daemons == "", daemons


def cluster_report(env: dict) -> str:
    """What a failure message needs to tell a stuck job from a lost cluster: the nodes and why they are down, every
    job, the namespaces, the daemons and their last log lines."""
    state = Path(env["SLURM_CONF"]).parent
    commands = [["sinfo", "-R"], ["sinfo", "-N", "-l"], ["squeue", "-t", "all", "-l"], ["ip", "netns", "list"]]
    commands += [["pgrep", "-a", "^tm-(slurm|munge)"], ["tail", "-n", "30", *map(str, sorted(state.glob("*/*.log")))]]
    return "\n".join(
        f"$ {' '.join(command)}\n{(result.stdout + result.stderr).strip()}"
        for command in commands
        for result in [subprocess.run(command, env=env, capture_output=True, text=True)]
    )


def finish(process: subprocess.Popen, env: dict, timeout: int) -> str:
    """Snakemake's output once it ends, or, past `timeout`, a failure with the cluster's state (snakemake killed)."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
        pytest.fail(f"snakemake still ran after {timeout} s:\n{output[-4000:]}\n{cluster_report(env)}")


def slurm_jobs(workspace: Path, env: dict) -> dict[str, list[str]]:
    """The SLURM job ids of each rule submitted from this workspace (the executor comments a job with its rule)."""
    out = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i|%k|%Z"], env=env, check=True, capture_output=True, text=True
    )
    jobs: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        job_id, comment, workdir = line.split("|")
        if Path(workdir) == workspace and comment.startswith("rule_"):
            jobs.setdefault(comment.removeprefix("rule_"), []).append(job_id)
    return {rule: sorted(ids, key=int) for rule, ids in jobs.items()}


def scontrol(job_id: str, env: dict) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], env=env, check=True, capture_output=True, text=True)
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout))


def on_two_nodes(workspace: Path, **train) -> None:
    """The committed slurm profile fitted to this machine, with train on two nodes as the profile's comment says
    (nodes: 2, tasks: 2, mpi: srun), and the test's training settings."""
    fit_profile_to_this_machine(workspace, train={**TRAIN, **train})
    path = workspace / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile["set-resources"]["train"].update(nodes=2, tasks=2, mpi="srun")
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["prepare"]["replay"] = 0  # no replay job: the test is about train
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def snakemake(workspace: Path, env: dict, *targets: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["snakemake", "--profile", "slurm", *targets],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def one_process(workspace: Path, out: Path, env: dict, **train) -> list[float]:
    """The same training in one process on this host with the two nodes' effective batch: the reference."""
    settings = {**TRAIN, "batch_size": 2 * TRAIN["batch_size"], **train}
    subprocess.run(
        [
            "tunemake",
            "train",
            "--base",
            "results/base",
            "--data",
            "results/tokenized",
            "--out",
            str(out / "out"),
            "--checkpoints",
            str(out / "checkpoints"),
            *(arg for key, value in settings.items() for arg in ("--set", f"train.{key}={value}")),
        ],
        cwd=workspace,
        env={k: v for k, v in env.items() if k != "SLURM_CONF"},
        check=True,
        capture_output=True,
    )
    return losses(out / "out")


def losses(out: Path) -> list[float]:
    return [row["loss"] for row in json.loads((out / "history.json").read_text())["train"]]


def test_two_nodes_train_through_snakemake_and_match_one_process(two_nodes, workspace, tmp_path):
    on_two_nodes(workspace, max_steps=6, checkpoint_steps=2, eval_steps=6)
    process = snakemake(workspace, two_nodes, "results/merged")
    output = finish(process, two_nodes, timeout=1200)
    assert process.returncode == 0, output[-6000:]

    summary = json.loads((workspace / "results" / "train" / "summary.json").read_text())
    assert summary["hosts"] == ["tmnode1", "tmnode2"] and summary["distributed_backend"] == "gloo", summary
    assert summary["processes"] == 2 and summary["batch"]["effective"] == 4 and summary["steps"] == 6
    (job_id,) = slurm_jobs(workspace, two_nodes)["train"]
    job = scontrol(job_id, two_nodes)
    assert job["JobState"] == "COMPLETED" and job["NodeList"] == "tmnode[1-2]" and job["NumNodes"] == "2", job
    # Each node's log names its rank and host; rank 0 writes the rule's log, rank 1 its own beside it.
    assert "[rank 0/2 on tmnode1]" in (workspace / "logs" / "train.log").read_text()
    assert "[rank 1/2 on tmnode2]" in (workspace / "logs" / "train.rank1.log").read_text()
    assert (workspace / "results" / "merged" / "model.safetensors").is_file()

    two = losses(workspace / "results" / "train")
    one = one_process(workspace, tmp_path / "one", two_nodes, max_steps=6, checkpoint_steps=2, eval_steps=6)
    assert len(two) == len(one) == 6
    assert two == pytest.approx(one, abs=TOLERANCE), max(abs(a - b) for a, b in zip(two, one))
    print(f"two nodes vs one process: largest loss difference {max(abs(a - b) for a, b in zip(two, one)):.2e}")


def node_pids(netns: str, pattern: str) -> list[int]:
    """The processes of a node whose command line matches `pattern`."""
    out = subprocess.run(["ip", "netns", "pids", netns], check=True, capture_output=True, text=True).stdout
    found = []
    for pid in map(int, out.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if re.search(pattern, cmdline):
            found.append(pid)
    return found


def test_a_node_lost_mid_training_fails_the_job_which_resumes_on_both_nodes(two_nodes, workspace, tmp_path):
    train = {"max_steps": 24, "checkpoint_steps": 4, "eval_steps": 24}
    on_two_nodes(workspace, **train)
    process = snakemake(workspace, two_nodes, "results/train")
    try:
        deadline = time.time() + 900
        checkpoint = workspace / "checkpoints" / "train" / "checkpoint-8" / "trainer_state.json"
        while not checkpoint.exists():
            assert process.poll() is None and time.time() < deadline, cluster_report(two_nodes)
            time.sleep(0.5)
        (job_id,) = slurm_jobs(workspace, two_nodes)["train"]
        # Node 2 loses its training processes at once (SIGKILL: no checkpoint, no goodbye), as a crashed host would.
        victims = node_pids("tm-node2", r"torchrun|tunemake train")
        assert victims, "no training processes on tmnode2"
        killed = time.time()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        while scontrol(job_id, two_nodes)["JobState"] in ("RUNNING", "COMPLETING"):
            assert time.time() < killed + BOUND, f"the job still runs {BOUND} s after node 2 was lost"
            time.sleep(0.5)
        failed_after = time.time() - killed
        assert scontrol(job_id, two_nodes)["JobState"] == "FAILED", cluster_report(two_nodes)
        output = finish(process, two_nodes, timeout=900)  # Snakemake's retry (the profile's retries: 2) resumes
    finally:
        if process.poll() is None:  # a failed check above: no snakemake (and its retries) left behind
            process.kill()
            process.communicate()
    assert process.returncode == 0, output[-6000:]
    first, retry = slurm_jobs(workspace, two_nodes)["train"]
    assert first == job_id and scontrol(retry, two_nodes)["JobState"] == "COMPLETED"
    summary = json.loads((workspace / "results" / "train" / "summary.json").read_text())
    assert summary["hosts"] == ["tmnode1", "tmnode2"] and summary["steps"] == 24
    assert 8 <= summary["resumed_from_step"] < 24, summary
    assert "resuming from" in (workspace / "logs" / "train.log").read_text()
    assert "resuming from" in (workspace / "logs" / "train.rank1.log").read_text()  # node 2 read rank 0's checkpoint

    one = one_process(workspace, tmp_path / "one", two_nodes, **train)
    two = losses(workspace / "results" / "train")
    assert two == pytest.approx(one, abs=TOLERANCE), max(abs(a - b) for a, b in zip(two, one))
    print(f"node lost: job failed {failed_after:.1f} s after; resumed from step {summary['resumed_from_step']}")


# A node whose processes die fails the job at once (its peers' connections are reset); one that stops answering
# fails the collective after TUNEMAKE_DDP_TIMEOUT (60 s here), and srun's --kill-on-bad-exit ends the rest.
BOUND = int(TIMEOUTS["TUNEMAKE_DDP_TIMEOUT"]) + 30


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in a container's args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def pod_env(rank: int) -> dict[str, str]:
    """What the Kubeflow training operator sets in a PyTorchJob's pods (master: rank 0; MASTER_ADDR is the master's
    service, which resolves to the master pod, tmnode1 here)."""
    return {
        "MASTER_ADDR": "tmnode1",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": "2",
        "RANK": str(rank),
        "PET_MASTER_ADDR": "tmnode1",
        "PET_MASTER_PORT": "23456",
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "1",
        "PET_NODE_RANK": str(rank),
    }


def pods(cwd: Path, env: dict, step: list[str], prefix: dict[str, list[str]] | None = None, nodes=(1, 2)) -> dict:
    """The PyTorchJob's container command (pytorchjob.manifest, one process per node), with the operator's
    variables, started as a process of each node in `nodes` (`prefix`: what runs before it on a node). Returns each
    node's exit status and output."""
    from tunemake.cluster import pytorchjob

    cfg = pytorchjob.PyTorchJobConfig(image="tunemake", gpus_per_node=1, volume={"claim": "data"})
    job = pytorchjob.manifest(step, 2, cfg, "tunemake-train-test")
    started = {}
    for rank, role in enumerate(("Master", "Worker")):
        node = f"tmnode{rank + 1}"
        if rank + 1 not in nodes:
            continue
        container = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"][0]
        penv = {**env, **{e["name"]: e["value"] for e in container["env"]}, **pod_env(rank)}
        argv = [expand(a, penv) for a in container["command"] + container["args"]]
        started[node] = subprocess.Popen(
            [SCRIPT, "exec", node, *(prefix or {}).get(node, []), *argv],
            cwd=cwd,
            env=penv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return {node: (p.wait(timeout=600), p.stdout.read()) for node, p in started.items()}


def pod_step(inputs: Path, folder: str, **train) -> list[str]:
    """tunemake train with relative paths, as the train pod stages them; the settings on the command line."""
    settings = {**TRAIN, "max_steps": 6, "checkpoint_steps": 2, "eval_steps": 6, **train}
    return [
        "tunemake",
        "train",
        "--base",
        "results/base",
        "--data",
        "results/tokenized",
        "--out",
        f"{folder}/out",
        "--checkpoints",
        f"{folder}/checkpoints",
        "--log-file",
        f"{folder}/train.log",
        *(arg for key, value in settings.items() for arg in ("--set", f"train.{key}={value}")),
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_llama_dir) -> Path:
    return make_inputs(tmp_path_factory.mktemp("multinode_inputs"), tiny_llama_dir)


def test_the_pytorchjob_torchrun_trains_across_the_two_namespaces_with_the_operators_variables(two_nodes, inputs):
    result = pods(inputs, two_nodes, pod_step(inputs, "pods"))
    for node, (code, output) in result.items():
        assert code == 0, (node, output[-4000:], cluster_report(two_nodes))
    summary = json.loads((inputs / "pods" / "out" / "summary.json").read_text())
    assert summary["hosts"] == ["tmnode1", "tmnode2"] and summary["processes"] == 2
    one = one_process(inputs, inputs / "one", two_nodes, max_steps=6, checkpoint_steps=2, eval_steps=6)
    assert losses(inputs / "pods" / "out") == pytest.approx(one, abs=TOLERANCE)


def test_checkpoints_not_shared_and_a_node_that_never_starts_fail_with_their_messages(two_nodes, inputs, monkeypatch):
    # tmnode2 sees its own empty folder where tmnode1 writes the checkpoints: a disk that is not shared.
    (inputs / "unshared").mkdir()
    local_disk = ["sh", "-c", 'mount -t tmpfs tmpfs "$0" && shift && exec "$@"', str(inputs / "unshared"), "-"]
    result = pods(inputs, two_nodes, pod_step(inputs, "unshared"), prefix={"tmnode2": local_disk})
    for node, (code, output) in result.items():
        assert code != 0, (node, output[-4000:])
        message = f"{inputs / 'unshared' / 'checkpoints'} is not shared between the nodes"
        assert message in output, (output[-4000:], cluster_report(two_nodes))
        assert "rank 1 on tmnode2 cannot see it" in output

    # Only the master starts: its rendezvous gives up after TUNEMAKE_RDZV_TIMEOUT, read where the manifest is made.
    monkeypatch.setenv("TUNEMAKE_RDZV_TIMEOUT", "10")
    started = time.time()
    ((code, output),) = pods(inputs, two_nodes, pod_step(inputs, "alone"), nodes=(1,)).values()
    assert code != 0 and "RendezvousTimeoutError" in output, output[-4000:]
    assert time.time() - started < 60
