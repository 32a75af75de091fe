"""launch: run a step on the processes and nodes its job was given.

One process per visible GPU (one on a CPU) on one node, srun + torchrun across the nodes of a SLURM allocation, or a
Kubeflow PyTorchJob when a Kubernetes pod asks for several nodes. The step itself never changes: `tunemake train`
works the same under all four.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tunemake.errors import StepError
from tunemake.runtime import RDZV_TIMEOUT, seconds

log = logging.getLogger(__name__)

RDZV_PORT = 29500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument(
        "--pytorchjob",
        type=Path,
        default=Path("k8s/pytorchjob.yaml"),
        help="image, volume and NCCL settings for multi-node training on Kubernetes",
    )
    parser.add_argument("step_command", nargs=argparse.REMAINDER, metavar="-- STEP ...")


def main(args: argparse.Namespace) -> None:
    step = args.step_command[1:] if args.step_command[:1] == ["--"] else args.step_command
    if not step:
        raise StepError(
            "tunemake launch: give the step to run after --, e.g. tunemake launch --nodes 2 -- tunemake train ..."
        )
    run(step, args.nodes, args.pytorchjob)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def slurm_nodelist(env: Mapping[str, str]) -> str:
    """The job's node list, e.g. gpu[01-04,07]. Snakemake's slurm-jobstep executor keeps only SLURM_JOB_ID of the
    job's SLURM_* variables, so without SLURM_JOB_NODELIST the list comes from squeue."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if nodelist:
        return nodelist
    job = env["SLURM_JOB_ID"]
    found = subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True)
    if found.returncode != 0 or not found.stdout.strip():
        raise StepError(f"SLURM job {job}: no SLURM_JOB_NODELIST and squeue -j {job} gave no nodes: {found.stderr}")
    return found.stdout.strip()


def slurm_head_node(env: Mapping[str, str]) -> str:
    """The first host of the allocation: torchrun's rendezvous endpoint on every node. SLURM expands its own
    compressed node list (scontrol show hostnames), which a regular expression would get wrong."""
    nodelist = slurm_nodelist(env)
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True, text=True
    ).stdout.split()
    if not hosts:
        raise StepError(f"scontrol show hostnames {nodelist} gave no hosts")
    return hosts[0]


def torchrun(
    nodes: int, per_node: int | str, host: str, port: int | str, run_id: str, step: list[str], env=os.environ
) -> list[str]:
    """The torchrun command every node of a multi-node run starts, under srun (SLURM) and in each pod of a PyTorchJob
    (Kubernetes) alike: c10d rendezvous at host:port, where the node whose hostname is `host` serves it; ranks are
    given out there, so no node needs to know its own. A node that has not joined after TUNEMAKE_RDZV_TIMEOUT seconds
    fails the rendezvous on every node; a worker that dies is not restarted (the job fails, and its retry resumes
    from the last checkpoint)."""
    return [
        "torchrun",
        f"--nnodes={nodes}",
        f"--nproc-per-node={per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{port}",
        f"--rdzv-id={run_id}",
        f"--rdzv-conf=join_timeout={seconds(RDZV_TIMEOUT, env)}",
        "--max-restarts=0",
        "--no-python",
        *step,
    ]


def command(step: list[str], nodes: int, env: Mapping[str, str] = os.environ, gpus: int | None = None) -> list[str]:
    """The command line that runs `step` on `nodes` nodes from inside this job (not for Kubernetes multi-node)."""
    if nodes < 1:
        raise StepError(f"nodes must be 1 or more, got {nodes}: fix the `nodes` resource in your profile")
    if nodes == 1:
        gpus = visible_gpus() if gpus is None else gpus
        if gpus <= 1:
            return step
        return ["torchrun", "--standalone", f"--nproc-per-node={gpus}", "--no-python", *step]
    if "SLURM_JOB_ID" not in env:
        raise StepError(
            f"nodes: {nodes} needs a multi-node launcher: run with --profile slurm (srun + torchrun) or --profile k8s "
            "(a Kubeflow PyTorchJob); locally, set the train rule's `nodes` resource back to 1"
        )
    # One torchrun per node (srun), each starting one worker per GPU this node sees (the nodes of a job are alike),
    # one on a CPU-only node.
    per_node = max(1, visible_gpus() if gpus is None else gpus)
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *torchrun(nodes, per_node, slurm_head_node(env), RDZV_PORT, env["SLURM_JOB_ID"], step, env),
    ]


def run(step: list[str], nodes: int, pytorchjob_config: Path) -> None:
    """Replace this process with the step (signals such as SLURM's pre-emption SIGTERM then reach it directly)."""
    if nodes > 1 and "KUBERNETES_SERVICE_HOST" in os.environ and "SLURM_JOB_ID" not in os.environ:
        from tunemake.cluster import pytorchjob

        pytorchjob.run(step, nodes, pytorchjob_config)
        return
    argv = command(step, nodes)
    log.info("launching: %s", " ".join(argv))
    logging.shutdown()
    os.execvp(argv[0], argv)
