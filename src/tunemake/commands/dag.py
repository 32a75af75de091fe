"""dag: write dvc.yaml, compiled from the Snakemake rules, so the two front doors cannot drift apart.

Everything DVC needs is read from the workflow through Snakemake's own API: each rule's command (without the
`tunemake launch` wrapper, which only matters on a cluster), inputs, outputs and parameter sections, plus the
metrics and plots the rules declare with `dvc_metrics()` / `dvc_plot()` (rules/common.smk). Each rule's code inputs
are its step module's import closure (`code_files`), read from the source, so editing a module re-runs exactly the
steps that import it, and editing cli.py re-runs nothing.
"""

from __future__ import annotations

import argparse
import ast
import re
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import yaml

from tunemake.errors import StepError
from tunemake.registry import PACKAGES

HEADER = """\
# GENERATED from the Snakemake rules (rules/*.smk) by `tunemake dag`: do not edit by hand.
# Change a rule, then run `tunemake dag` to regenerate this file; tests/test_frontdoors.py fails while it is stale.
"""
LAUNCH = re.compile(r"^tunemake launch --nodes 1 -- ")
# DVC runs params.yaml's run only: the {point} wildcard empty, no `--set` (sweep points are Snakemake's,
# tunemake.commands.sweep).
MAIN_RUN = {"wildcards": SimpleNamespace(point=""), "params": SimpleNamespace(sweep="")}


def main_run(path) -> str:
    """A path or command of a rule with {point} (Snakemake writes it `{point,REGEX}` once constrained) left empty."""
    return re.sub(r"\{point(,[^}]*)?\}", "", str(path))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("."), help="the project (default: the current directory)")
    parser.add_argument("--check", action="store_true", help="only check that dvc.yaml is current (exit 1 if not)")


def main(args: argparse.Namespace) -> None:
    text = dvc_yaml(args.root)
    target = args.root / "dvc.yaml"
    if args.check:
        if not target.is_file() or target.read_text() != text:
            raise StepError(f"{target} is not what the Snakemake rules compile to: run `tunemake dag` and commit it")
        return
    target.write_text(text)


def code_files(step: str, src: Path = Path("src")) -> list[str]:
    """The files of `tunemake.steps.<step>` (or of the command `tunemake.commands.<step>`) and of every tunemake
    module it imports, transitively (imports inside functions included: they run too). Importing a.b.c runs the __init__ of a and a.b, so those count as well. A
    registry (tunemake.registry.PACKAGES) counts whole, since its __init__ imports each module by name; any other
    sub-package counts only for the modules imported from it."""
    # a step, or a command a rule runs (sweep)
    package = "steps" if (src / "tunemake" / "steps" / f"{step}.py").is_file() else "commands"
    module = f"tunemake.{package}.{step}"
    todo, seen, files = [module], set(), set()
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name in seen:
                continue
            seen.add(name)
            path = _module_file(name, src)
            if path is not None:
                files.add(path)
                todo += _tunemake_imports(path)
            if name.removeprefix("tunemake.") in PACKAGES:
                todo += [f"{name}.{module.stem}" for module in path.parent.glob("*.py") if module.stem != "__init__"]
    if _module_file(module, src) not in files:
        raise StepError(f"no module tunemake.steps.{step} under {src}: a rule's code() must name its step's module")
    return sorted(str(f) for f in files)


def _module_file(name: str, src: Path) -> Path | None:
    folder = src.joinpath(*name.split("."))
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None  # `from tunemake.x import NAME` where NAME is not a module


def _tunemake_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise StepError(f"{path}: relative import of {node.module!r}; tunemake uses absolute imports only")
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return [n for n in names if n.split(".")[0] == "tunemake"]


@contextmanager
def workflow(root: Path):
    """The workflow API for root/Snakefile with default settings (a shared filesystem, as both front doors run it
    here). The parsed workflow is the API's internal `_workflow`: snakemake is pinned in envs/requirements.lock,
    and this fails loudly if that changes."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        yield api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(),
            storage_settings=StorageSettings(),
            snakefile=root / "Snakefile",
            workdir=root,
        )


def planned(root: Path) -> set[str]:
    """The rules a `snakemake` run in root would run now (a dry run, read from Snakemake's DAG, not its output)."""
    with workflow(root) as api:
        api.dag().execute_workflow(executor="dryrun")
        # The dry run marks each job finished as it "runs" it; the rule `all` (norun) only collects targets.
        return {job.rule.name for job in api._workflow.dag.needrun_jobs(exclude_finished=False) if not job.rule.norun}


def stages(root: Path) -> dict:
    """dvc.yaml's content: one stage per rule that runs a command, then the declared metrics and plots."""
    with workflow(root) as api:
        flow = api._workflow
    out: dict = {"stages": {}}
    for rule in flow.rules:
        if rule.shellcmd is None:
            continue
        cmd = rule.shellcmd.format(
            input=rule.input,
            output=rule.output,
            log=rule.log,
            resources=SimpleNamespace(nodes=1),
            **MAIN_RUN,
        )
        stage = {"cmd": main_run(LAUNCH.sub("", cmd)), "deps": list(dict.fromkeys(map(main_run, rule.input)))}
        sections = [name for name in rule.params.keys() if name != "sweep"]
        if sections:
            stage["params"] = sections
        stage["outs"] = list(map(main_run, rule.output))
        out["stages"][rule.name] = stage
    out["metrics"] = list(flow.globals["DVC_METRICS"])
    out["plots"] = [{path: spec} for path, spec in flow.globals["DVC_PLOTS"].items()]
    return out


def dvc_yaml(root: Path) -> str:
    return HEADER + yaml.safe_dump(stages(root), sort_keys=False, width=200)
