# Validate params.yaml with the same pydantic model the steps use, so a bad setting fails before any job starts.
from pathlib import Path

from tunemake.params import load as load_params

PARAMS = load_params("params.yaml")
TUNEMAKE_ENV = "../envs/tunemake.yaml"


# Inputs from the repository (code, params.yaml, raw data, a local base folder) are local(): with no shared
# filesystem (--profile k8s) they reach each pod in Snakemake's source archive of the git-tracked files, while every
# file a step produces goes through the default storage provider.
def sources(*paths):
    return [local(str(p)) for p in paths]


def src(*modules):
    """The package sources a step runs, as inputs: editing a step's code re-runs that step (as dvc.yaml deps do)."""
    files = []
    for name in ("cli", "params", "jsonl", "errors", *modules):
        path = Path("src/tunemake", name)
        files += sorted(str(p) for p in path.glob("*.py")) if path.is_dir() else [f"{path}.py"]
    return sources(*files)


def base_model_files():
    """A base model given as a local path is an input too; the bundled one ships inside the installed package."""
    spec = PARAMS.base
    return sources(*(p for p in (spec.model, spec.chat_template) if p and Path(p).exists()))


def base_weights():
    """The local base folder that results/base pins (train, merge and evaluate load its weights from there)."""
    return sources(*(p for p in (PARAMS.base.model,) if Path(p).is_dir()))
