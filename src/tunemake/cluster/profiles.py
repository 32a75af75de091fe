"""profiles: what a cluster profile needs, checked before Snakemake builds the DAG.

A placeholder bucket or missing S3 credentials otherwise fail as one botocore traceback per output, a placeholder
image as pods that cannot pull minutes after submission. Here each is one line naming the setting to edit, and
nothing is submitted or read from storage. rules/common.smk calls `check(workflow)`.

Snakemake parses the Snakefile before it picks the executor, so the executor, image, resources and storage come from
the command line read again with Snakemake's own parser, profile included (`settings`). A dry run skips the checks
that need a live cluster (the image pods pull, kubeconfig, sbatch, the cluster's partitions) and says so.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The committed profiles' placeholders (tests/test_profiles.py keeps them in step with k8s/ and slurm/).
PLACEHOLDER_PREFIX = "s3://my-bucket/"
PLACEHOLDER_IMAGE_HOST = "registry.example.com/"
PLACEHOLDER_ACCOUNT = "my-project"


@dataclass
class Settings:
    """What the snakemake command line asks for, its profile included."""

    executor: str | None = None
    dryrun: bool = False
    profile: Path | None = None  # the profile's config.yaml, to name lines in
    storage_provider: str | None = None
    storage_prefix: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    container_image: str | None = None
    resources: dict[str, dict[str, str]] = field(default_factory=dict)  # rule (or "" for the defaults) -> name -> value


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def message(self, profile: str) -> str:
        lines = [f"tunemake: --profile {profile} is not ready; nothing was submitted:"]
        lines += [f"  {problem}" for problem in self.problems]
        if self.skipped:
            lines.append(f"  (dry run: not checked: {', '.join(self.skipped)})")
        return "\n".join(lines)


def line_of(profile: Path | None, key: str, value: str | None = None) -> str:
    """'k8s/config.yaml line 20' for the first uncommented `key:` line (holding `value`, if given)."""
    if profile is None or not profile.is_file():
        return f"--{key}" if value is None else key
    for number, line in enumerate(profile.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text.startswith(f"{key}:") and (value is None or value in text):
            return f"{display(profile)} line {number}"
    return f"{display(profile)} ({key})"


def display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def storage_problems(s: Settings) -> list[str]:
    if s.storage_provider != "s3":
        return []
    problems = []
    prefix = s.storage_prefix or ""
    if not prefix or prefix.startswith(PLACEHOLDER_PREFIX):
        where = line_of(s.profile, "default-storage-prefix")
        problems.append(
            f"{where}: default-storage-prefix is {prefix or 'not set'}, the example bucket: set it to s3://BUCKET/PATH "
            "of a bucket you can write"
        )
    missing = s3_credentials_missing(s)
    if missing:
        problems.append(missing)
    return problems


def s3_credentials_missing(s: Settings) -> str | None:
    """The S3 plugin hands SNAKEMAKE_STORAGE_S3_ACCESS_KEY/SECRET_KEY to boto3, which otherwise looks for credentials
    itself (AWS_* variables, AWS_PROFILE and ~/.aws, a web identity, a container or instance role): ask botocore."""
    keys = "SNAKEMAKE_STORAGE_S3_ACCESS_KEY and SNAKEMAKE_STORAGE_S3_SECRET_KEY"
    if s.s3_access_key and s.s3_secret_key:
        return None
    if s.s3_access_key or s.s3_secret_key:
        given, lacking = ("ACCESS_KEY", "SECRET_KEY") if s.s3_access_key else ("SECRET_KEY", "ACCESS_KEY")
        return f"SNAKEMAKE_STORAGE_S3_{given} is set but SNAKEMAKE_STORAGE_S3_{lacking} is not: export both"
    import botocore.session

    session = botocore.session.get_session()
    session.set_config_variable("metadata_service_timeout", 1)  # off EC2 the instance role's address never answers
    session.set_config_variable("metadata_service_num_attempts", 1)
    try:
        found = session.get_credentials()
    except Exception as err:  # a broken ~/.aws/config or credential_process
        return f"no usable S3 credentials: botocore says {err}; export {keys}"
    if found is None:
        return f"no S3 credentials: export {keys} (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or set AWS_PROFILE)"
    return None


def kubernetes_problems(s: Settings, report: Report) -> None:
    if s.dryrun:  # no pod starts, so no image is pulled
        report.skipped += ["container-image", "kubeconfig"]
        return
    image = s.container_image or ""
    where = line_of(s.profile, "container-image")
    if image.startswith(PLACEHOLDER_IMAGE_HOST):
        report.problems.append(
            f"{where}: container-image is {image}, the example image: docker build -t IMAGE . && docker push IMAGE, "
            "then set it to IMAGE"
        )
    elif image.startswith("snakemake/snakemake:"):
        report.problems.append(
            f"{where}: container-image is {image}, Snakemake's own, which lacks tunemake: build the Dockerfile's image "
            "and set it here"
        )
    missing = kubeconfig_missing()
    if missing:
        report.problems.append(missing)


def kubeconfig_missing() -> str | None:
    """The executor loads a kubeconfig (KUBECONFIG or ~/.kube/config), else the pod's own service account: the same
    loaders, before anything is submitted. Neither contacts the cluster."""
    from kubernetes import client, config

    try:  # the file named now: the module reads KUBECONFIG once, at import
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG", "~/.kube/config"),
            client_configuration=client.Configuration(),
            persist_config=False,
        )
        return None
    except Exception as err:
        kube_error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    try:
        config.load_incluster_config(client_configuration=client.Configuration())
        return None
    except Exception:
        pass
    return (
        f"no Kubernetes cluster to submit to: no usable kubeconfig ({kube_error}) and not inside a pod with a service "
        "account: set KUBECONFIG or run `kubectl config use-context CONTEXT`"
    )


def slurm_problems(s: Settings, report: Report, partitions: list[str] | None = None) -> None:
    """`partitions`: the cluster's, as sinfo lists them (read here when None and not a dry run)."""
    for rule, resources in s.resources.items():
        if resources.get("slurm_account") == PLACEHOLDER_ACCOUNT:
            where = line_of(s.profile, "slurm_account", PLACEHOLDER_ACCOUNT)
            report.problems.append(
                f"{where}: slurm_account{f' of {rule}' if rule else ''} is {PLACEHOLDER_ACCOUNT}, the example: set your "
                "account (sacctmgr show associations user=$USER) or delete the line"
            )
    if s.dryrun:
        report.skipped += ["sbatch", "partitions"]
        return
    if partitions is None:
        if shutil.which("sbatch") is None:
            report.problems.append(
                "sbatch is not on PATH: run snakemake --profile slurm on a login node of the cluster, or add SLURM's "
                "bin folder to PATH"
            )
            return
        partitions = cluster_partitions(report)
        if partitions is None:
            return
    for rule, resources in s.resources.items():
        partition = resources.get("slurm_partition")
        if partition and partition not in partitions:
            where = line_of(s.profile, "slurm_partition", partition)
            report.problems.append(
                f"{where}: slurm_partition{f' of {rule}' if rule else ''} is {partition}, which this cluster lacks: "
                f"set one of {', '.join(partitions) or '(none listed)'}"
            )


def cluster_partitions(report: Report) -> list[str] | None:
    try:
        listed = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        report.problems.append(f"sinfo cannot list the cluster's partitions: {str(detail).strip()}")
        return None
    return sorted(set(listed.stdout.split()))


def problems(s: Settings) -> Report:
    report = Report(problems=storage_problems(s))
    if s.executor == "kubernetes":
        kubernetes_problems(s, report)
    elif s.executor == "slurm":
        slurm_problems(s, report)
    return report


def resources(default, per_rule) -> dict[str, dict[str, str]]:
    """Snakemake's parsed --default-resources and --set-resources as {rule, or "" for the defaults: {name: value}},
    each value as written (a string resource is an expression until a job evaluates it)."""
    rules = {"": default or {}, **(per_rule or {})}
    return {
        rule: {name: str(r.raw).strip("'\"") for name, r in items.items() if r.raw is not None}
        for rule, items in rules.items()
    }


def plugin_setting(value) -> str | None:
    """A storage plugin's setting as parsed: a list of values (tagged settings), or dataclasses.MISSING."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def settings(workflow) -> Settings | None:
    """The settings of the `snakemake` command that parses this Snakefile; None when something else parses it (a
    job's own snakemake in a pod or SLURM job, `tunemake dag`, the tests' API calls)."""
    from snakemake_interface_executor_plugins.settings import ExecMode

    argv0 = Path(sys.argv[0])
    if workflow.exec_mode != ExecMode.DEFAULT or "snakemake" not in (argv0.name, argv0.parent.name):
        return None
    from snakemake.cli import get_profile_dir, parse_args

    with contextlib.redirect_stderr(io.StringIO()):  # it says "Using profile ..." again
        _, args = parse_args(sys.argv[1:])
    profile = None
    if args.profile:
        found = get_profile_dir(str(args.profile[-1]))
        profile = found[1] if found else None
    return Settings(
        executor=args.executor,
        dryrun=bool(args.dryrun),
        profile=profile,
        storage_provider=args.default_storage_provider,
        storage_prefix=args.default_storage_prefix,
        s3_access_key=plugin_setting(getattr(args, "storage_s3_access_key", None)),
        s3_secret_key=plugin_setting(getattr(args, "storage_s3_secret_key", None)),
        container_image=args.container_image,
        resources=resources(args.default_resources, args.set_resources),
    )


def check(workflow) -> None:
    """Exit with one message per problem, before Snakemake builds the DAG (which reads storage) or submits a job."""
    found = settings(workflow)
    if found is None:
        return
    report = problems(found)
    name = display(found.profile.parent) if found.profile else found.executor
    if report.problems:
        print(report.message(name), file=sys.stderr)
        sys.exit(1)
    if report.skipped:
        print(f"tunemake: dry run of --profile {name}: not checked: {', '.join(report.skipped)}", file=sys.stderr)
