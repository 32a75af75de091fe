# Validate params.yaml with the same pydantic model the steps use, so a bad setting fails before any job starts.
import re
from pathlib import Path

from snakemake.settings.types import SharedFSUsage

from tunemake.commands.dag import code_files
from tunemake.params.schema import load as load_params
from tunemake.params.reinforce import reward_files
from tunemake.cluster.profiles import check as check_profile
from tunemake.cluster.s3storage import ask_again_for_missing_directories
from tunemake.commands.sweep import parse as parse_sweep

PARAMS = load_params("params.yaml")
# A cluster profile's bucket, credentials, image and scheduler, checked before the DAG is built
# (tunemake.cluster.profiles).
check_profile(workflow)
TUNEMAKE_ENV = "../envs/tunemake.yaml"
# Steps that use every core they are given (torch, llama.cpp) ask for all of them. Snakemake lowers a rule's threads
# to --cores, so on one machine they take turns (two side by side each ran 2 to 6 times slower: llama.cpp's threads
# spin); the cluster profiles give each its cores with set-threads and cap the rest with max-threads.
ALL_CORES = 1024

# `--config sweep=KEY:V1,V2` (tunemake.commands.sweep): the steps after tokenize also run once per value, at
# results/{point} with point = sweep/KEY=VALUE/; params.yaml's own run is point "" (results/train, ...). Only this sweep's points
# match, so a stale point folder is never picked up.
SWEEP = parse_sweep(config.get("sweep"))


wildcard_constraints:
    point="(?:" + "|".join(re.escape(point) for point in SWEEP.points) + ")",


def point_params(section):
    """params.yaml's `section` as the run at {point} sees it: a rule's params, so each run re-runs when its own
    settings change."""
    return lambda wildcards: SWEEP.section(config, wildcards.point, section)


def align_params(wildcards):
    """When align is off its settings change nothing: editing them must not re-run what follows."""
    align = point_params("align")(wildcards)
    return align if align["enabled"] else {"enabled": False}


def reinforce_params(wildcards):
    """When reinforce is off its settings change nothing: editing them must not re-run what follows."""
    reinforce = point_params("reinforce")(wildcards)
    return reinforce if reinforce["enabled"] else {"enabled": False}


def reward_sources():
    """The files of the user's reward modules (reinforce.rewards: module:function) inside the project, as inputs."""
    return job_sources(*reward_files(PARAMS.reinforce.rewards))


def replay_params(wildcards):
    """When replay is off (prepare.replay: 0) its settings change nothing; switching it on re-runs the step."""
    return config["replay"] if config["prepare"]["replay"] else {"enabled": False}


def point_set(wildcards):
    """The `--set KEY=VALUE` a sweep point's commands carry; nothing for params.yaml's run."""
    return SWEEP.set_args(wildcards.point)


# Repository files (code, params.yaml, raw data, a local base folder) as inputs. Rules that run where snakemake runs
# (localrules) mark them local(). With no shared filesystem (--profile k8s) jobs leave them out: Snakemake would run
# any job with a local() input on this machine, and pods get the git-tracked files in Snakemake's source archive and
# run the image's installed tunemake. Files the steps produce always are inputs, so they travel through storage.
SHARED_FS = SharedFSUsage.INPUT_OUTPUT in workflow.storage_settings.shared_fs_usage


def sources(*paths):
    return [local(str(p)) for p in paths]


def job_sources(*paths):
    return sources(*paths) if SHARED_FS else []


def code(step):
    """The step's module and every tunemake module it imports (read from the source, never typed by hand), as
    inputs: editing one re-runs exactly the steps that import it."""
    return job_sources(*code_files(step))


# What `dvc exp show` and `dvc plots show` read; `tunemake dag` copies them into dvc.yaml. Declared beside the rules.
DVC_METRICS = []
DVC_PLOTS = {}


def dvc_metrics(*paths):
    DVC_METRICS.extend(paths)


def dvc_plot(path, **spec):
    DVC_PLOTS[path] = spec


def base_model_files():
    """A base model given as a local path is an input too; the bundled one ships inside the installed package."""
    spec = PARAMS.base
    return job_sources(*(p for p in (spec.model, spec.chat_template) if p and Path(p).exists()))


def base_weights():
    """The local base folder that results/base pins (train, merge and baseline load its weights from there)."""
    return job_sources(*(p for p in (PARAMS.base.model,) if Path(p).is_dir()))


# The S3 storage plugin's stale directory check, fixed where the installed version has it (tunemake.cluster.s3storage).
ask_again_for_missing_directories()
