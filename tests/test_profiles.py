"""Cluster profiles refuse what they lack (placeholders, credentials, a scheduler) in one line each, before the DAG."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO
from tunemake.cluster import profiles
from tunemake.cluster.profiles import Report, Settings

K8S = REPO / "k8s" / "config.yaml"
SLURM = REPO / "slurm" / "config.yaml"
REAL_PREFIX = "s3://tunemake-runs/team"
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "SNAKEMAKE_STORAGE_S3_ACCESS_KEY",
    "SNAKEMAKE_STORAGE_S3_SECRET_KEY",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
)


def line_of(path: Path, key: str) -> int:
    """The line of the profile that sets (or comments out) `key`, counted from 1, as the problems name it."""
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if f"{key}:" in text)


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """No S3 credentials and no kubeconfig anywhere botocore or the kubernetes client look."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # this machine has no instance role to find
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    return tmp_path


def k8s(**changes) -> Settings:
    settings = Settings(
        executor="kubernetes",
        profile=K8S,
        storage_provider="s3",
        storage_prefix=REAL_PREFIX,
        s3_access_key="AKIA",
        s3_secret_key="secret",
        container_image="ghcr.io/acme/tunemake:1.0",
    )
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings


def one_problem(report: Report | list[str]) -> str:
    problems = report.problems if isinstance(report, Report) else report
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    return problems[0]


def test_the_committed_profiles_hold_the_placeholders_the_checks_know():
    k8s_profile = yaml.safe_load(K8S.read_text())
    assert k8s_profile["default-storage-prefix"].startswith(profiles.PLACEHOLDER_PREFIX)
    assert k8s_profile["container-image"].startswith(profiles.PLACEHOLDER_IMAGE_HOST)
    assert f"# slurm_account: {profiles.PLACEHOLDER_ACCOUNT}" in SLURM.read_text()


def test_the_placeholder_bucket_is_refused_naming_its_line(no_credentials):
    placeholder = yaml.safe_load(K8S.read_text())["default-storage-prefix"]
    problem = one_problem(profiles.storage_problems(k8s(storage_prefix=placeholder)))
    line = next(
        i for i, text in enumerate(K8S.read_text().splitlines(), 1) if text.startswith("default-storage-prefix")
    )
    assert f"config.yaml line {line}: default-storage-prefix is s3://my-bucket/tunemake" in problem
    assert "s3://BUCKET/PATH" in problem


def test_no_s3_credentials_are_refused_naming_the_variables(no_credentials):
    problem = one_problem(profiles.storage_problems(k8s(s3_access_key=None, s3_secret_key=None)))
    assert problem.startswith("no S3 credentials: export SNAKEMAKE_STORAGE_S3_ACCESS_KEY and")
    assert one_problem(profiles.storage_problems(k8s(s3_secret_key=None))).endswith("SECRET_KEY is not: export both")


def test_s3_credentials_boto3_finds_itself_are_accepted(no_credentials, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert profiles.storage_problems(k8s(s3_access_key=None, s3_secret_key=None)) == []
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    (no_credentials / "aws-credentials").write_text("[team]\naws_access_key_id = AKIA\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_PROFILE", "team")
    assert profiles.storage_problems(k8s(s3_access_key=None, s3_secret_key=None)) == []


def test_the_placeholder_image_is_refused_naming_its_line(no_credentials):
    kubeconfig(no_credentials)
    problem = one_problem(profiles.problems(k8s(container_image="registry.example.com/tunemake:0.1.0")))
    assert "config.yaml line 11: container-image is registry.example.com/tunemake:0.1.0" in problem
    assert "docker push IMAGE" in problem
    assert "lacks tunemake" in one_problem(profiles.problems(k8s(container_image="snakemake/snakemake:v9.27.1")))


def test_no_kubeconfig_and_no_service_account_is_refused(no_credentials):
    problem = one_problem(profiles.problems(k8s()))
    assert problem.startswith("no Kubernetes cluster to submit to") and "set KUBECONFIG" in problem
    kubeconfig(no_credentials)
    assert profiles.problems(k8s()).problems == []


def test_a_dry_run_skips_only_what_needs_a_live_cluster(no_credentials):
    report = profiles.problems(k8s(dryrun=True, container_image="registry.example.com/tunemake:0.1.0"))
    assert report.problems == [] and report.skipped == ["container-image", "kubeconfig"]
    report = profiles.problems(k8s(dryrun=True, s3_access_key=None, s3_secret_key=None))
    assert one_problem(report).startswith("no S3 credentials")
    assert "(dry run: not checked: container-image, kubeconfig)" in report.message("k8s")


def kubeconfig(folder: Path) -> None:
    """A kubeconfig for a cluster that is never contacted: loading one reads the file only."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (folder / "kubeconfig").write_text(yaml.safe_dump(config))


def slurm(**changes) -> Settings:
    settings = Settings(executor="slurm", profile=SLURM, resources={"": {"slurm_partition": "debug", "runtime": "60"}})
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings


def test_the_placeholder_account_is_refused_naming_its_line(tmp_path):
    profile = tmp_path / "config.yaml"
    profile.write_text(SLURM.read_text().replace("# slurm_account: my-project", "slurm_account: my-project"))
    resources = {"": {"slurm_partition": "debug", "slurm_account": "my-project"}}
    report = Report()
    profiles.slurm_problems(slurm(profile=profile, resources=resources), report, partitions=["debug"])
    line = line_of(SLURM, "slurm_account")
    assert f"config.yaml line {line}: slurm_account is my-project, the example: set your account" in one_problem(report)


def test_a_partition_the_cluster_lacks_is_refused_naming_its_line():
    resources = {"": {"slurm_partition": "debug"}, "train": {"slurm_partition": "gpu"}}
    report = Report()
    profiles.slurm_problems(slurm(resources=resources), report, partitions=["cpu", "debug"])
    assert "slurm_partition of train is gpu, which this cluster lacks: set one of cpu, debug" in one_problem(report)
    report = Report()
    profiles.slurm_problems(slurm(dryrun=True), report)
    assert report.problems == [] and report.skipped == ["sbatch", "partitions"]


def test_sbatch_missing_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    report = Report()
    profiles.slurm_problems(slurm(), report)
    assert one_problem(report).startswith("sbatch is not on PATH: run snakemake --profile slurm on a login node")


# The same through snakemake itself, as a new user meets it.


@pytest.fixture
def checkout(tmp_path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    for name in ("Snakefile", "params.yaml", "rules", "local", "slurm", "k8s", "src", "data"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            folder / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    return folder


def snakemake(folder: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([BIN / "snakemake", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def refused(result: subprocess.CompletedProcess) -> list[str]:
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out and "Error" not in out, out
    assert not (result.stdout and "rule " in result.stdout), out  # no job was planned
    return out.strip().splitlines()


@pytest.mark.integration  # real snakemake runs
def test_the_k8s_profile_with_its_placeholders_says_what_to_edit(checkout, no_credentials):
    lines = refused(snakemake(checkout, "--profile", "k8s", "-n"))
    assert lines == [
        "Using profile k8s for setting default command line arguments.",
        "tunemake: --profile k8s is not ready; nothing was submitted:",
        lines[2],
        lines[3],
        "  (dry run: not checked: container-image, kubeconfig)",
    ]
    assert lines[2].startswith("  k8s/config.yaml line 19: default-storage-prefix is s3://my-bucket/tunemake")
    assert lines[3].startswith("  no S3 credentials: export SNAKEMAKE_STORAGE_S3_ACCESS_KEY")


@pytest.mark.integration  # real snakemake runs
def test_the_k8s_profile_refuses_the_placeholder_image_and_no_cluster_before_submitting(
    checkout, no_credentials, monkeypatch
):
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ACCESS_KEY", "AKIA")
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_SECRET_KEY", "secret")
    lines = refused(snakemake(checkout, "--profile", "k8s", "--default-storage-prefix", REAL_PREFIX))
    assert len(lines) == 4, lines
    assert lines[2].startswith("  k8s/config.yaml line 11: container-image is registry.example.com/tunemake:0.1.0")
    assert lines[3].startswith("  no Kubernetes cluster to submit to")
    assert not (checkout / ".snakemake" / "locks").exists() or not any((checkout / ".snakemake" / "locks").iterdir())


@pytest.mark.integration  # real snakemake runs
def test_the_slurm_profile_refuses_no_sbatch_and_the_placeholder_account(checkout, tmp_path):
    path = os.environ["PATH"]
    if shutil.which("sbatch"):  # this machine's tools, but SLURM's sbatch
        tools = tmp_path / "bin"
        tools.mkdir()
        for tool in Path(shutil.which("sbatch")).parent.iterdir():
            if tool.name != "sbatch":
                (tools / tool.name).symlink_to(tool)
        path = f"{BIN}{os.pathsep}{tools}"
    lines = refused(snakemake(checkout, "--profile", "slurm", path=path))
    assert lines[1:] == [
        "tunemake: --profile slurm is not ready; nothing was submitted:",
        "  sbatch is not on PATH: run snakemake --profile slurm on a login node of the cluster, or add SLURM's bin "
        "folder to PATH",
    ]
    profile = checkout / "slurm" / "config.yaml"
    profile.write_text(profile.read_text().replace("# slurm_account: my-project", "slurm_account: my-project"))
    lines = refused(snakemake(checkout, "--profile", "slurm", "-n"))
    line = line_of(SLURM, "slurm_account")
    assert len(lines) == 4 and lines[2].startswith(f"  slurm/config.yaml line {line}: slurm_account is my-project"), (
        lines
    )
    assert lines[3] == "  (dry run: not checked: sbatch, partitions)"
