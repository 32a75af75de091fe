"""Multi-node training on Kubernetes as a Kubeflow PyTorchJob (master + workers, torchrun, NCCL), the way the seed
jobs ran it. The train rule's pod stages its inputs on a shared volume, submits the job, follows it, and copies the
output back, so Snakemake sees one ordinary job and its storage plugin uploads the result as usual."""

from __future__ import annotations

import hashlib
import logging
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunemake.errors import StepError
from tunemake.runtime import DDP_TIMEOUT, seconds

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
OUTPUT_FLAGS = ("--out", "--log-file")
NOT_STAGED = (*OUTPUT_FLAGS, "--checkpoints")  # the workers keep their own checkpoints in the run folder


class Volume(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim: str = Field(description="a ReadWriteMany PersistentVolumeClaim every node mounts")
    mount: str = "/workdir/checkpoints"


class PyTorchJobConfig(BaseModel):
    """k8s/pytorchjob.yaml: where and how the workers run (the experiment settings stay in params.yaml)."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = "default"
    image: str
    service_account: str | None = None
    gpus_per_node: int = Field(8, ge=1)
    cpu: str = "16"
    memory: str = "128Gi"
    shm: str = Field("16Gi", description="/dev/shm size: NCCL and DataLoader workers need more than the default 64 MB")
    volume: Volume
    env: dict[str, str] = {}
    node_selector: dict[str, str] = {}
    backoff_limit: int = 3
    poll_seconds: int = 20


def load_config(path: Path) -> PyTorchJobConfig:
    if not path.exists():
        raise StepError(
            f"{path} not found: multi-node training on Kubernetes reads the image, volume and NCCL "
            "settings from it (see k8s/pytorchjob.yaml in the repository)"
        )
    try:
        return PyTorchJobConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as err:
        raise StepError(
            f"{path}: {err}\nFix that setting (the fields are in src/tunemake/cluster/pytorchjob.py)."
        ) from err


def job_name(step: list[str]) -> str:
    """Stable for the same command and params, so a retried job finds its checkpoints on the volume."""
    params = Path(step[step.index("--params") + 1]) if "--params" in step else None
    text = " ".join(step) + (params.read_text() if params and params.exists() else "")
    return (
        f"tunemake-{Path(step[1]).name if len(step) > 1 else 'step'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    )


def manifest(step: list[str], nodes: int, cfg: PyTorchJobConfig, name: str) -> dict[str, Any]:
    """The PyTorchJob: one master and nodes-1 workers, each the torchrun that srun starts on a SLURM node
    (launch.torchrun), with one process per GPU and its rendezvous on the master. The operator sets MASTER_ADDR (the
    master's service, the master pod's hostname), MASTER_PORT, WORLD_SIZE, RANK and PET_* in every pod; Kubernetes
    expands $(VAR) in args. The timeouts are this pod's (TUNEMAKE_RDZV_TIMEOUT in the arguments, TUNEMAKE_DDP_TIMEOUT
    passed on) unless k8s/pytorchjob.yaml's env sets them."""
    from tunemake.commands import launch

    if nodes < 2:
        raise StepError(f"a PyTorchJob is for 2 or more nodes, got {nodes}")
    workdir = f"{cfg.volume.mount}/runs/{name}"
    torchrun = launch.torchrun(nodes, cfg.gpus_per_node, "$(MASTER_ADDR)", "$(MASTER_PORT)", name, step)
    env = {DDP_TIMEOUT[0]: str(seconds(DDP_TIMEOUT)), **cfg.env}
    gpus = {"nvidia.com/gpu": str(cfg.gpus_per_node)}
    container = {
        "name": "pytorch",  # the operator finds the training container by this name
        "image": cfg.image,
        "imagePullPolicy": "IfNotPresent",
        "workingDir": workdir,
        "command": torchrun[:1],
        "args": torchrun[1:],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "resources": {
            "limits": {**gpus, "cpu": cfg.cpu, "memory": cfg.memory},
            "requests": {**gpus, "cpu": cfg.cpu, "memory": cfg.memory},
        },
        "volumeMounts": [{"name": "data", "mountPath": cfg.volume.mount}, {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    pod = {
        "metadata": {"labels": {"app.kubernetes.io/name": "tunemake", "tunemake/job": name}},
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": cfg.volume.claim}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm}},
            ],
            **({"serviceAccountName": cfg.service_account} if cfg.service_account else {}),
            **({"nodeSelector": cfg.node_selector} if cfg.node_selector else {}),
        },
    }
    replica = {"restartPolicy": "OnFailure", "template": pod}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": {"app.kubernetes.io/managed-by": "tunemake"}},
        "spec": {
            "nprocPerNode": str(cfg.gpus_per_node),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": cfg.backoff_limit},
            "pytorchReplicaSpecs": {"Master": {"replicas": 1, **replica}, "Worker": {"replicas": nodes - 1, **replica}},
        },
    }


def _paths(step: list[str], flags: tuple[str, ...] | None = None) -> list[str]:
    """The values of --flag PATH pairs; all relative paths that exist when flags is None (the step's inputs)."""
    pairs = zip(step, step[1:])
    if flags is not None:
        return [value for flag, value in pairs if flag in flags]
    return [value for flag, value in pairs if flag.startswith("--") and flag not in NOT_STAGED and Path(value).exists()]


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def run(step: list[str], nodes: int, config_path: Path) -> None:
    from kubernetes import client, config

    cfg = load_config(config_path)
    name = job_name(step)
    workdir = Path(cfg.volume.mount, "runs", name)
    inputs = _paths(step)
    for path in inputs:
        if Path(path).is_absolute():
            raise StepError(f"{path}: give the step relative paths so the workers find it under {workdir}")
        _copy(Path(path), workdir / path)
    log.info("staged %s on %s", ", ".join(inputs), workdir)

    config.load_incluster_config()
    api = client.CustomObjectsApi()
    body = manifest(step, nodes, cfg, name)
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, cfg.namespace, PLURAL, name)
        log.info("deleted the previous %s (it resumes from the checkpoints it left on the volume)", name)
        time.sleep(cfg.poll_seconds)
    except client.ApiException as err:
        if err.status != 404:
            raise
    api.create_namespaced_custom_object(GROUP, VERSION, cfg.namespace, PLURAL, body)
    log.info(
        "submitted PyTorchJob %s/%s: %d nodes x %d GPUs: %s",
        cfg.namespace,
        name,
        nodes,
        cfg.gpus_per_node,
        shlex.join(step),
    )
    state = None
    while state not in ("Succeeded", "Failed"):
        time.sleep(cfg.poll_seconds)
        job = api.get_namespaced_custom_object(GROUP, VERSION, cfg.namespace, PLURAL, name)
        conditions = [c for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"]
        if conditions and conditions[-1]["type"] != state:
            state = conditions[-1]["type"]
            log.info("PyTorchJob %s: %s %s", name, state, conditions[-1].get("message", ""))
    for path in _paths(step, OUTPUT_FLAGS):
        if (workdir / path).exists():
            _copy(workdir / path, Path(path))
    if state == "Failed":
        raise StepError(f"PyTorchJob {cfg.namespace}/{name} failed: kubectl logs -n {cfg.namespace} {name}-master-0")
