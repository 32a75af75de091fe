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


def slurm_head_node(env: Mapping[str, str]) -> str:
    """The first host of the allocation: torchrun's rendezvous endpoint on every node."""
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]], check=True, capture_output=True, text=True
    ).stdout.split()
    return hosts[0]


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
    # One torchrun per node (srun), each starting one worker per GPU it sees; c10d rendezvous on the first node.
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "torchrun",
        f"--nnodes={nodes}",
        "--nproc-per-node=gpu",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={slurm_head_node(env)}:{RDZV_PORT}",
        f"--rdzv-id={env['SLURM_JOB_ID']}",
        "--no-python",
        *step,
    ]


def run(step: list[str], nodes: int, pytorchjob_config: Path) -> None:
    """Replace this process with the step (signals such as SLURM's pre-emption SIGTERM then reach it directly)."""
    if nodes > 1 and "KUBERNETES_SERVICE_HOST" in os.environ and "SLURM_JOB_ID" not in os.environ:
        from tunemake import pytorchjob

        pytorchjob.run(step, nodes, pytorchjob_config)
        return
    argv = command(step, nodes)
    log.info("launching: %s", " ".join(argv))
    logging.shutdown()
    os.execvp(argv[0], argv)
