"""Kubernetes: the manifests tunemake generates or ships, checked against the Kubernetes API schemas
(kubernetes-validate, strict) and the Kubeflow training operator's PyTorchJob types (its Python SDK's models, with
unknown fields rejected). Nothing here reaches a cluster: docs/clusters.md lists what needs a real one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml

from conftest import REPO
from tunemake.cluster import pytorchjob
from tunemake.commands import launch
from tunemake.errors import StepError

K8S_VERSION = "1.33.0"
TRAIN = [
    "tunemake",
    "train",
    "--params",
    "params.yaml",
    "--base",
    "results/base",
    "--data",
    "results/tokenized",
    "--out",
    "results/train",
    "--checkpoints",
    "checkpoints/train",
    "--log-file",
    "logs/train.log",
]


def model_class(name: str):
    import kubeflow.training.models as kubeflow
    import kubernetes.client.models as core

    return getattr(kubeflow, name, None) or getattr(core, name)


def check_types(value, type_name: str, where: str = "") -> None:
    """Walk a manifest along the SDK's generated OpenAPI types: every key must be a field of its type."""
    if type_name.startswith("list["):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check_types(item, type_name[5:-1], f"{where}[{i}]")
    elif type_name.startswith("dict("):
        assert isinstance(value, dict), where
        for key, item in value.items():
            check_types(item, type_name.split(",", 1)[1][:-1].strip(), f"{where}.{key}")
    elif type_name in {"str", "int", "bool", "object"}:
        assert type_name == "object" or type(value).__name__ == type_name, f"{where}: {value!r} is not {type_name}"
    else:
        cls = model_class(type_name)
        assert isinstance(value, dict), where
        fields = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        unknown = set(value) - set(fields)
        assert not unknown, f"{where}: {sorted(unknown)} are not fields of {type_name}"
        for key, item in value.items():
            check_types(item, cls.openapi_types[fields[key]], f"{where}.{key}")


def validate_pytorchjob(job: dict) -> None:
    from kubeflow.training.api_client import ApiClient

    check_types(job, "KubeflowOrgV1PyTorchJob", "PyTorchJob")
    # The SDK's own deserializer enforces required fields and enum values of the Kubeflow types.
    ApiClient().deserialize(SimpleNamespace(data=json.dumps(job)), "KubeflowOrgV1PyTorchJob")
    for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{role.lower()}"},
            "template": replica["template"],
        }
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)


@pytest.fixture
def config() -> pytorchjob.PyTorchJobConfig:
    return pytorchjob.load_config(REPO / "k8s" / "pytorchjob.yaml")


@pytest.mark.parametrize("nodes", [2, 4])
def test_the_generated_pytorchjob_passes_the_kubernetes_and_kubeflow_schemas(config, nodes):
    job = pytorchjob.manifest(TRAIN, nodes, config, pytorchjob.job_name(TRAIN))
    validate_pytorchjob(job)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, nodes - 1)
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["image"] == config.image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(config.gpus_per_node)
    args = container["args"]
    assert f"--nnodes={nodes}" in args and "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in args
    assert container["command"] + args == launch.torchrun(
        nodes, 8, "$(MASTER_ADDR)", "$(MASTER_PORT)", job["metadata"]["name"], TRAIN
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NCCL_ASYNC_ERROR_HANDLING"] == "1" and env["NCCL_SOCKET_IFNAME"] == "eth0"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {config.volume.mount, "/dev/shm"}
    assert container["workingDir"].startswith(config.volume.mount + "/runs/")


def test_a_broken_manifest_is_caught_by_each_schema(config):
    job = pytorchjob.manifest(TRAIN, 2, config, "tunemake-train-x")
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicaCount"] = 3  # not a field
    with pytest.raises(AssertionError, match="replicaCount"):
        validate_pytorchjob(job)
    job = pytorchjob.manifest(TRAIN, 2, config, "tunemake-train-x")
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"] = ["8"]
    with pytest.raises(AssertionError, match="limits"):
        validate_pytorchjob(job)
    job = pytorchjob.manifest(TRAIN, 2, config, "tunemake-train-x")
    del job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValueError, match="name"):  # required: the SDK's deserializer refuses it
        validate_pytorchjob(job)
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "master"},
        "template": job["spec"]["pytorchReplicaSpecs"]["Master"]["template"],
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="name"):  # and so does the Kubernetes schema
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)


def test_the_cluster_setup_manifests_pass_the_kubernetes_schemas():
    documents = list(yaml.safe_load_all((REPO / "k8s" / "cluster.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding"]
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_pytorchjob_name_is_stable_for_a_retry_and_changes_with_the_params(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("train: {epochs: 1}\n")
    first = pytorchjob.job_name(TRAIN)
    assert first == pytorchjob.job_name(list(TRAIN)) and re.fullmatch(r"[a-z0-9-]{1,63}", first)
    Path("params.yaml").write_text("train: {epochs: 2}\n")
    assert pytorchjob.job_name(TRAIN) != first


def test_the_train_pod_stages_its_inputs_and_copies_back_only_its_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("results/base", "results/tokenized", "checkpoints/train", "results/train"):
        Path(folder).mkdir(parents=True)
    Path("params.yaml").write_text("{}\n")
    assert pytorchjob._paths(TRAIN) == ["params.yaml", "results/base", "results/tokenized"]
    assert pytorchjob._paths(TRAIN, pytorchjob.OUTPUT_FLAGS) == ["results/train", "logs/train.log"]


def test_a_pytorchjob_config_with_a_typo_is_refused(tmp_path):
    path = tmp_path / "pytorchjob.yaml"
    path.write_text("image: x\nvolume: {claim: c}\ngpus_per_nodes: 8\n")
    with pytest.raises(StepError, match=r"(?s)pytorchjob.yaml: .*gpus_per_nodes"):
        pytorchjob.load_config(path)


def test_one_node_runs_one_process_per_gpu_and_the_step_itself_without_one():
    assert launch.command(TRAIN, 1, env={}, gpus=0) == TRAIN
    assert launch.command(TRAIN, 1, env={}, gpus=1) == TRAIN
    assert launch.command(TRAIN, 1, env={}, gpus=4) == [
        "torchrun",
        "--standalone",
        "--nproc-per-node=4",
        "--no-python",
        *TRAIN,
    ]
    with pytest.raises(Exception, match="--profile slurm"):
        launch.command(TRAIN, 2, env={})
