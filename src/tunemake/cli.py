"""tunemake's command line: `tunemake STEP ...`, one subcommand per module of tunemake.steps and tunemake.commands
that defines `add_arguments(parser)` and `main(args)`.

Each step owns its flags, beside its `run` (TRL's make_parser style); this file only finds the steps, adds the three
flags every step shares, sets up logging and prints a StepError without a traceback. It is no rule's input, so
editing it re-runs nothing. Only the chosen step is imported, and `tunemake --help` reads the steps' docstrings
without importing any of them.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
import os
import socket
import sys
import time
from pathlib import Path

from tunemake.errors import StepError
from tunemake.params import ParamsError

PACKAGE = Path(__file__).parent


def commands() -> dict[str, tuple[str, str]]:
    """Command name -> (module, the first line of its docstring), for each module that defines add_arguments: the
    steps (tunemake/steps/) and the commands beside them (tunemake/commands/: dag, sync, launch, serve...)."""
    found = {}
    for path in sorted([*(PACKAGE / "steps").glob("*.py"), *(PACKAGE / "commands").glob("*.py")], key=lambda p: p.stem):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "add_arguments" for node in tree.body):
            summary = " ".join((ast.get_docstring(tree) or "").split("\n\n")[0].split())
            name = path.stem.replace("_", "-")
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            found[name] = (module, summary.removeprefix(f"{name}: "))
    return found


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunemake", description=__doc__.split("\n\n")[0].replace("\n", " "))
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    for name, (module, summary) in commands().items():
        sub = steps.add_parser(name, help=summary, description=summary)
        sub.add_argument(
            "--params", type=Path, default=Path("params.yaml"), help="parameter file (default: params.yaml)"
        )
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one parameter of the file, e.g. train.lora.r=8 (repeatable; a sweep point runs this way)",
        )
        sub.add_argument("--log-file", dest="log", type=Path, help="also write the step's log to this file")
        if name == chosen:
            step = importlib.import_module(module)
            step.add_arguments(sub)
            sub.set_defaults(main=step.main)
    return parser


def per_rank(log_file: Path | None) -> tuple[Path | None, str]:
    """Under torchrun (WORLD_SIZE > 1) each process's log lines name its rank and host, and a rank other than 0
    writes its own file beside rank 0's: logs/train.log, logs/train.rank1.log... (the nodes may share the folder)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return log_file, ""
    rank = int(os.environ.get("RANK", "0"))
    where = f" [rank {rank}/{world} on {socket.gethostname()}]"
    if log_file and rank > 0:
        log_file = log_file.with_name(f"{log_file.stem}.rank{rank}{log_file.suffix}")
    return log_file, where


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(chosen).parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_file, where = per_rank(args.log)
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s{where} %(levelname)s %(message)s", handlers=handlers, force=True
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the openai client's one line per request to llama-server
    log = logging.getLogger("tunemake")
    started = time.perf_counter()
    try:
        args.main(args)
    except (StepError, ParamsError) as err:
        log.error("tunemake %s failed:\n%s", args.step, err)
        return getattr(err, "exit_code", 1)
    log.info("tunemake %s finished in %.1fs", args.step, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
