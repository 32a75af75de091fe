"""The k8s profile's storage set-up, run for real with no shared filesystem: Snakemake's S3 storage plugin against
a local S3 server (moto), --shared-fs-usage none, and every job in a pod stand-in (tests/pod/) that starts in an
empty directory with its own HOME. A step that read a file its rule does not declare would fail here."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time

import boto3
import pytest
import yaml

from conftest import BIN, REPO, run

pytestmark = pytest.mark.slow
BUCKET, PREFIX = "tunemake", "runs/test"


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield endpoint
    server.terminate()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for key, value in {
        "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "testing",
        "SNAKEMAKE_STORAGE_S3_SECRET_KEY": "testing",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        if page.get("Contents"):
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in page["Contents"]]})
    client.delete_bucket(Bucket=BUCKET)


def test_the_pipeline_runs_with_no_shared_filesystem(s3, s3_endpoint, workspace, tmp_path_factory, monkeypatch):
    # A local base folder must travel with the sources to reach a pod: keep it in the repository, by relative path.
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    shutil.copytree(params["base"]["model"], workspace / "models" / "tiny")
    params["base"]["model"] = "models/tiny"
    # Each pod starts with an empty cache, so each GGUF step would build llama-server from source (minutes each):
    # the served path and BFCL are tested elsewhere; here GGUFs answer in-process and bfcl writes its "off" note.
    params["eval"]["served"] = False
    params["bfcl"]["enabled"] = False
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "add", "-A"], workspace)
    run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base model in the repository"], workspace
    )

    pods = tmp_path_factory.mktemp("pods")
    monkeypatch.setenv("POD_ROOT", str(pods))
    # The committed k8s profile with two things swapped: pods are the stand-ins, the bucket is the local server's.
    cmd = [
        "snakemake",
        "--profile",
        "k8s",
        "--executor",
        "cluster-generic",
        "--cluster-generic-submit-cmd",
        str(REPO / "tests" / "pod" / "submit.sh"),
        "--cluster-generic-status-cmd",
        str(REPO / "tests" / "pod" / "status.sh"),
        "--job-deploy-sources",
        "--default-storage-prefix",
        f"s3://{BUCKET}/{PREFIX}",
        "--storage-s3-endpoint-url",
        s3_endpoint,
        "--jobs",
        "2",
        "--seconds-between-status-checks",
        "1",
    ]
    run(cmd, workspace)

    keys = {
        o["Key"].removeprefix(f"{PREFIX}/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    }
    for produced in (
        "results/gate.json",
        "results/report/index.html",
        "results/eval/metrics.json",
        "results/gguf/Modelfile",
        "results/train/summary.json",
        "results/converter/convert_hf_to_gguf.py",
    ):
        assert produced in keys, sorted(keys)[:40]
    assert not (workspace / "results").exists()  # nothing was produced on this machine's disk
    gate = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/results/gate.json")["Body"].read())
    assert gate["verdict"] == "abort"  # two steps of a tiny random model learn nothing

    ran_in_pods = sorted(
        re.search(r"^(?:local)?rule (\w+):", (pod / "log").read_text(), re.M).group(1) for pod in pods.iterdir()
    )
    assert ran_in_pods == ["base", "baseline", "bfcl", "evaluate", "gguf", "merge", "replay", "suite", "train"]
    for pod in pods.iterdir():
        assert (pod / "exit").read_text().strip() == "0"
        # Each pod started empty: what it had of results/ came from S3 into Snakemake's storage folder.
        assert not (pod / "workdir" / "results").exists(), pod

    again = run([*cmd, "-n"], workspace)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_the_k8s_profile_plans_the_pipeline_as_pods(s3, s3_endpoint, workspace):
    """The committed profile with the real Kubernetes executor, as far as no cluster is needed: a dry run."""
    plan = run(
        [
            "snakemake",
            "--profile",
            "k8s",
            "-n",
            "--default-storage-prefix",
            f"s3://{BUCKET}/{PREFIX}",
            "--storage-s3-endpoint-url",
            s3_endpoint,
        ],
        workspace,
    )
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout, re.M))
    assert {"train", "merge", "evaluate", "gguf", "base", "prepare"} <= set(jobs), plan.stdout
