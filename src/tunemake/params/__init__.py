"""params.yaml: the single source of experiment parameters, validated by pydantic.

One module per section (tunemake.params.train holds `train:`, ...), and each step loads only the sections it reads
(`load(path, overrides, train=TrainParams)`): its code inputs then hold only those sections' modules, so editing a
field of one section re-runs only the steps that read it, as editing its value in params.yaml does (the rules and
DVC stages list their sections). tunemake.params.schema has the whole file, for what reads every section.
Runtime settings (threads, GPUs, partitions) live in the Snakemake profiles, never here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from tunemake.registry import names

SECTIONS = (
    "base", "suite", "replay", "prepare", "pairs", "tokenize", "train", "merge", "align", "reinforce", "gguf",
    "eval", "bfcl", "gate",
)  # fmt: skip


def registered(package: str, kind: str) -> AfterValidator:
    """A name that must be a module of tunemake/<package>/ (a registry, see tunemake.registry)."""

    def check(value: str) -> str:
        if value not in names(package):
            raise ValueError(f"unknown {kind} {value!r}; use one of: {', '.join(names(package))}")
        return value

    return AfterValidator(check)


class Strict(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class ParamsError(Exception):
    pass


def load(path: str | Path = "params.yaml", overrides: Sequence[str] = (), **sections: type[Strict]) -> Any:
    """The named sections of params.yaml, validated, with each `KEY=VALUE` of `overrides` (`tunemake STEP --set`, a
    sweep point) applied first: `load(path, overrides, train=TrainParams).train`. A section name params.yaml should
    not have is an error; the other sections are not read (the Snakefile validates the whole file before any job)."""
    raw, where = read(path, overrides)
    fields = {
        name: (
            model,
            ... if any(f.is_required() for f in model.model_fields.values()) else Field(default_factory=model),
        )
        for name, model in sections.items()
    }
    return validated(raw, create_model("Params", __config__=ConfigDict(extra="ignore"), **fields), where)


def read(path: str | Path, overrides: Sequence[str] = ()) -> tuple[dict, Path]:
    """params.yaml's raw content with the overrides set, and how to name it in errors; every top-level key checked
    to be a section."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root or pass --params PATH") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    raw = overridden(raw, overrides)
    if overrides:
        path = Path(f"{path} with --set {' '.join(overrides)}")
    unknown = [key for key in raw if key not in SECTIONS]
    if unknown:
        lines = [f"  {key}: unknown section; valid here: {', '.join(SECTIONS)}" for key in unknown]
        raise ParamsError("\n".join([f"{path}: {len(unknown)} invalid setting(s):", *lines]))
    return raw, path


def validated(raw: dict, model: type[BaseModel], path: Path):
    """`raw` as `model`, or a ParamsError naming the file and each invalid key with what is valid there."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        lines = [f"{path}: {len(err.errors())} invalid setting(s):"]
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if e["type"] == "extra_forbidden":
                known = ", ".join(_fields_at(model, e["loc"][:-1]))
                lines.append(f"  {where}: unknown {'section' if len(e['loc']) == 1 else 'key'}; valid here: {known}")
            else:
                lines.append(f"  {where}: {e['msg']}")
        raise ParamsError("\n".join(lines)) from None


def overridden(raw: dict, overrides: Sequence[str]) -> dict:
    """A copy of the raw params with each `KEY=VALUE` set (the value read as YAML); validation is the caller's."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {override!r}: write KEY=VALUE, e.g. --set train.lora.r=8")
        raw = with_value(raw, key, yaml.safe_load(value))
    return raw


def with_value(raw: dict, key: str, value: Any) -> dict:
    """A copy of the raw params with the dotted `key` set to `value` (missing sections made, for validation to name)."""
    raw = copy.deepcopy(raw)
    *parents, leaf = key.split(".")
    tree = raw
    for part in parents:
        if not isinstance(tree.get(part, {}), dict):
            raise ParamsError(f"--set {key}: {part!r} is not a section")
        tree = tree.setdefault(part, {})
    tree[leaf] = value
    return raw


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at `loc` accepts (list indices skipped), for naming the valid ones beside a misspelt key."""
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *get_args(annotation)] + [a for arg in get_args(annotation) for a in get_args(arg)]
        model = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return list(model.model_fields)
