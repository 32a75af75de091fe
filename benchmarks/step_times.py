"""Wall time of the steps where users wait on answers (suite, replay, evaluate), for one or more source trees side by
side on the same results, in one run: how much a change to those steps gained.

Each tree's steps run as `tunemake STEP` with PYTHONPATH at that tree's src/ (the installed dependencies are
shared), on the inputs in --results (a finished pipeline's results/, copied or in place), writing to a scratch
folder; a tree whose step does not take --converter gets none. Prints JSON: per tree and step, the seconds (evaluate's
metrics.json has each model's own peak memory).

    python benchmarks/step_times.py --results results --src /tmp/old/src --src src --steps suite replay evaluate
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def arguments(step: str, results: Path, out: Path) -> list[str]:
    inputs = {
        "suite": ["--base", "base"],
        "replay": ["--base", "base"],
        "evaluate": [
            *("--base base --merged merged --gguf gguf --data data --pairs pairs --tokenized tokenized".split()),
            *("--suite suite".split()),
        ],
    }[step]
    given = [str(results / a) if not a.startswith("--") else a for a in inputs]
    return [*given, "--converter", str(results / "converter"), "--out", str(out)]


def takes_converter(src: Path, step: str) -> bool:
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    usage = subprocess.run(
        [sys.executable, "-m", "tunemake.cli", step, "--help"], env=env, capture_output=True, text=True
    )
    return "--converter" in usage.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--src", type=Path, action="append", required=True, help="a source tree's src/ (repeat)")
    parser.add_argument("--steps", nargs="+", default=["suite", "replay", "evaluate"])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    args = parser.parse_args()
    report = {"results": str(args.results), "runs": []}
    for src in args.src:
        for step in args.steps:
            with tempfile.TemporaryDirectory() as scratch:
                command = [sys.executable, "-m", "tunemake.cli", step, "--params", str(args.params)]
                command += arguments(step, args.results.resolve(), Path(scratch) / "out")
                if not takes_converter(src, step):
                    at = command.index("--converter")
                    del command[at : at + 2]
                env = {**os.environ, "PYTHONPATH": str(src.resolve())}
                started = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - started
                if done.returncode:
                    sys.exit(f"{step} with {src} failed:\n{done.stderr[-3000:]}")
                report["runs"].append({"src": str(src), "step": step, "seconds": round(seconds, 1)})
                print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
