"""evaluate's llama.cpp work (every test row answered in one batched pass, the timed rows one at a time) under
several builds of llama-cpp-python, side by side in one run: each `--site` is a folder a build was installed into
(`pip install --target DIR llama_cpp_python-*.whl`); the installed one (setup's, GGML_NATIVE=OFF) always runs first.
Each build runs in its own process on the same GGUF files and rows. Prints JSON: per build and file, seconds,
prompt tokens/s of the timed rows, llama.cpp's CPU features, and whether the answers equal the first build's.

    python benchmarks/llamacpp_builds.py --gguf results/gguf/model-F16.gguf results/gguf/model-Q5_0.gguf \
        --site /tmp/native/site
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def worker(files: list[str], test: str, base: str) -> dict:
    import llama_cpp

    from tunemake.evaluation.heldout import examples, score_gguf
    from tunemake.params.eval import EvalParams

    rows = examples(Path(test), None)
    out = {"llama_cpp": llama_cpp.__file__, "system_info": llama_cpp.llama_print_system_info().decode(), "files": {}}
    for file in files:
        started = time.perf_counter()
        result = score_gguf(file, base, rows, EvalParams().model_dump(), None)
        seconds = time.perf_counter() - started
        prompt_tokens = sum(t[0] for t in result["timings"])
        prompt_seconds = sum(t[2] for t in result["timings"])
        out["files"][file] = {
            "seconds": round(seconds, 1),
            "timed_prompt_tokens_per_second": round(prompt_tokens / prompt_seconds, 1),
            "answers": result["answers"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", nargs="+", required=True)
    parser.add_argument("--test", default="results/data/test.jsonl")
    parser.add_argument("--base", default="results/base", help="the tokenizer the rows are prepared with")
    parser.add_argument("--site", action="append", default=[], help="a folder with another llama-cpp-python build")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.gguf, args.test, args.base)))
        return
    builds = {}
    for site in ["installed", *args.site]:
        env = dict(os.environ)
        if site != "installed":
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
        cmd = [sys.executable, __file__, "--worker", "--test", args.test, "--base", args.base, "--gguf", *args.gguf]
        builds[site] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    reference = {file: result["answers"] for file, result in next(iter(builds.values()))["files"].items()}
    for build in builds.values():
        for file, result in build["files"].items():
            result["answers_equal_first_build"] = result.pop("answers") == reference[file]
    print(json.dumps(builds, indent=1))


if __name__ == "__main__":
    main()
