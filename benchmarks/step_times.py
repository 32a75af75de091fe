"""Wall time of the steps where users wait on answers (suite, replay, baseline, evaluate), for one or more source
trees side by side on the same results, in one run: how much a change to those steps gained.

Each tree's steps run as `tunemake STEP` with PYTHONPATH at that tree's src/ (the installed dependencies are
shared), on the inputs in --results (a finished pipeline's results/, copied or in place), writing to a scratch
folder per tree. Each step gets the inputs its own --help names (`--data` is results/data, and so on), and a step's
output stands in for results' folder of that name for the steps after it in the same tree (baseline, then evaluate);
a tree without a step skips it. Prints JSON: per tree and step, the seconds (evaluate's metrics.json has each
model's own peak memory).

    python benchmarks/step_times.py --results results --src /tmp/old/src --src src --steps suite replay baseline evaluate
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_INPUTS = {"help", "params", "set", "log", "out"}


def inputs(src: Path, step: str) -> set[str] | None:
    """The folder flags of a tree's step (--data, --base, ...), or None when the tree has no such step."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    usage = subprocess.run(
        [sys.executable, "-m", "tunemake.cli", step, "--help"], env=env, capture_output=True, text=True
    )
    if usage.returncode:
        return None
    return set(re.findall(r"--([a-z]+)\b", usage.stdout)) - NOT_INPUTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--src", type=Path, action="append", required=True, help="a source tree's src/ (repeat)")
    parser.add_argument("--steps", nargs="+", default=["suite", "replay", "baseline", "evaluate"])
    parser.add_argument(
        "--params", type=Path, action="append", help="params.yaml, once for all trees or once per --src, in order"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep each tree's outputs and step logs in KEEP/1, KEEP/2... (to compare them)"
    )
    args = parser.parse_args()
    params = args.params or [REPO / "params.yaml"]
    if len(params) not in (1, len(args.src)):
        parser.error("give --params once, or once per --src")
    params = params * len(args.src) if len(params) == 1 else params
    results = args.results.resolve()
    report = {"results": str(results), "runs": []}
    for number, (src, settings) in enumerate(zip(args.src, params), 1):
        with tempfile.TemporaryDirectory() as scratch:
            if args.keep:
                scratch = args.keep / str(number)
                scratch.mkdir(parents=True, exist_ok=True)
            made: dict[str, Path] = {}
            for step in args.steps:
                flags = inputs(src, step)
                if flags is None:
                    report["runs"].append({"src": str(src), "step": step, "seconds": None, "note": "no such step"})
                    continue
                command = [sys.executable, "-m", "tunemake.cli", step, "--params", str(settings)]
                for flag in sorted(flags):
                    folder = made.get(flag, results / flag)
                    if folder.exists():
                        command += [f"--{flag}", str(folder)]
                made[step] = Path(scratch) / step
                command += ["--out", str(made[step])]
                env = {**os.environ, "PYTHONPATH": str(src.resolve())}
                started = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - started
                if args.keep:
                    (Path(scratch) / f"{step}.log").write_text(done.stderr)
                if done.returncode:
                    sys.exit(f"{step} with {src} failed:\n{done.stderr[-3000:]}")
                report["runs"].append({"src": str(src), "step": step, "seconds": round(seconds, 1)})
                print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
