"""sync: make Snakemake and DVC agree on which results are up to date, without running any step.

Snakemake judges results by file times and its own records in .snakemake/; DVC by content hashes in dvc.lock. Each
tool's runs, and DVC's checkout, pull and `exp apply` (which write files in any order and keep no times), leave the
other tool behind. sync asks each tool in turn, and only ever takes the word of one that vouches for every result:
- DVC finds every output equal to dvc.lock: `snakemake --touch` re-stamps the outputs in DAG order and refreshes
  Snakemake's records (parameters, code), so Snakemake has nothing to do;
- otherwise Snakemake has nothing to do (it just ran): `dvc commit` records the outputs in dvc.lock and the DVC
  cache, so DVC has nothing to do;
- otherwise some result is stale for both, and sync says which instead of vouching for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from tunemake.commands.dag import planned
from tunemake.errors import StepError

log = logging.getLogger("tunemake")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("."), help="the project (default: the current directory)")


def main(args: argparse.Namespace) -> None:
    run(args.root)


def run(root: Path) -> str:
    stale_for_dvc = _dvc_stale(root)
    if not stale_for_dvc:
        _tool(
            root, "snakemake", "--touch", "--forceall", "--cores", "1", "--quiet", "all"
        )  # all: every rule gets its records
        log.info("sync: every result matches dvc.lock; Snakemake's file times and records now say so too")
        return "snakemake"
    try:
        plan = ", ".join(sorted(planned(root)))
    except Exception as err:  # any reason Snakemake cannot plan is reported, not raised
        plan = f"(Snakemake cannot plan: {err})"
    if not plan:
        _tool(root, "dvc", "commit", "--force", "--quiet")
        log.info(
            "sync: Snakemake's results recorded in dvc.lock and the DVC cache (stages %s)", ", ".join(stale_for_dvc)
        )
        return "dvc"
    raise StepError(
        f"results are out of date for both tools, so neither can vouch for them.\n"
        f"  DVC: stages {', '.join(stale_for_dvc)} differ from dvc.lock\n"
        f"  Snakemake would run: {plan}\n"
        "Finish the run with `snakemake --profile local` or `dvc repro`, or restore finished results with "
        "`dvc checkout` (`dvc pull` on a fresh clone), then run `tunemake sync` again."
    )


def _dvc_stale(root: Path) -> list[str]:
    status = json.loads(_tool(root, "dvc", "status", "--json").stdout or "{}")
    return sorted(status)


def _tool(root: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", name, *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise StepError(
            f"`{name} {' '.join(args)}` failed in {root}:\n{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result
