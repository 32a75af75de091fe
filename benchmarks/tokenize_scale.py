"""prepare + tokenize at real scale: N generated xlam-format rows (Salesforce/xlam-function-calling-60k's shape).

Rows are made from the bundled tool-call rows (data/raw/tool_calls.jsonl), seeded: each takes a real row's query
and call, a unique number in the query (so dedup keeps it), and two to four extra tools from the bundled rows'
tool set (xlam rows offer 1-5 tools). Each step runs as its own process, as the pipeline runs it; its memory is
its process tree's (tokenize's worker processes included), sampled. Tokens/s counts every token of the tokenized rows. Prints JSON.

    python benchmarks/tokenize_scale.py --rows 60000 600000 --base results/base
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent


def generate(rows: int, out: Path, seed: int = 0) -> int:
    """Write `rows` xlam rows to `out`; returns its size in bytes."""
    real = [json.loads(line) for line in (ROOT / "data" / "raw" / "tool_calls.jsonl").read_text().splitlines()]
    tools = {t["name"]: t for row in real for t in json.loads(row["tools"])}
    rng = random.Random(seed)
    with out.open("w") as f:
        for i in range(rows):
            row = rng.choice(real)
            offered = json.loads(row["tools"])
            extra = rng.sample(sorted(set(tools) - {t["name"] for t in offered}), rng.randint(2, 4))
            offered += [tools[name] for name in extra]
            rng.shuffle(offered)
            query = f"{row['query']} (request {i})"
            f.write(json.dumps({"id": i, "query": query, "tools": json.dumps(offered), "answers": row["answers"]}))
            f.write("\n")
    return out.stat().st_size


def step(name: str, *args: str, log: Path) -> dict:
    """Run one tunemake step in its own process: wall seconds, and the peak of its process tree's memory sampled
    every 0.2 s, as PSS (each shared page split between the processes sharing it: tokenize's workers are forked
    and share most pages with their parent, so adding up their RSS would count those pages twice) and the largest
    single process's RSS. File pages read from the memory-mapped Arrow files count in both; peak_anon_mb leaves them
    out: the heap and stacks of the tree (resident minus file-backed and shared pages, summed: a page a forked
    worker still shares with its parent counts twice, so it errs high)."""
    started = time.perf_counter()
    # stderr to a file: a pipe nobody reads fills with progress bars and blocks the step
    with open(log, "w") as stderr:
        process = psutil.Popen([sys.executable, "-m", "tunemake.cli", name, *args], stdout=DEVNULL, stderr=stderr)
    peak_pss = peak_rss = peak_anon = 0
    while process.poll() is None:
        pss = anon = 0
        for member in [process, *process.children(recursive=True)]:
            try:
                memory = member.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pss, peak_rss = pss + memory.pss, max(peak_rss, memory.rss)
            anon += memory.rss - memory.shared
        peak_pss, peak_anon = max(peak_pss, pss), max(peak_anon, anon)
        time.sleep(0.2)
    if process.returncode != 0:
        raise RuntimeError(f"tunemake {name} failed:\n{log.read_text()[-3000:]}")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_pss_mb": round(peak_pss / 2**20),
        "peak_process_rss_mb": round(peak_rss / 2**20),
        "peak_anon_mb": round(peak_anon / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[60_000, 600_000])
    parser.add_argument("--base", type=Path, default=Path("results/base"))
    args = parser.parse_args()

    results = []
    for rows in sorted(args.rows):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            size = generate(rows, tmp / "xlam.jsonl")
            params = yaml.safe_load((ROOT / "params.yaml").read_text())
            params["prepare"].update(
                sources=[{"path": str(tmp / "xlam.jsonl"), "format": "xlam"}], group_by=None, replay=0
            )
            (tmp / "params.yaml").write_text(yaml.safe_dump(params))
            common = ["--params", str(tmp / "params.yaml")]
            prepare = step("prepare", *common, "--out", str(tmp / "data"), log=tmp / "prepare.log")
            tokenize = step(
                "tokenize",
                *common,
                "--base",
                str(args.base),
                "--data",
                str(tmp / "data"),
                "--out",
                str(tmp / "tok"),
                log=tmp / "tokenize.log",
            )
            stats = json.loads((tmp / "tok" / "token_stats.json").read_text())
            kept = sum(s["rows"] for s in stats["splits"].values())
            tokens = sum(s["tokens"] for s in stats["splits"].values())
            prepare["rows_per_second"] = round(rows / prepare["seconds"])
            tokenize.update(
                rows_per_second=round(kept / tokenize["seconds"]), tokens_per_second=round(tokens / tokenize["seconds"])
            )
            results.append(
                {
                    "rows": rows,
                    "file_mb": round(size / 2**20, 1),
                    "tokens": tokens,
                    "prepare": prepare,
                    "tokenize": tokenize,
                    "total_seconds": round(prepare["seconds"] + tokenize["seconds"], 1),
                }
            )
            print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"cpus": len(__import__("os").sched_getaffinity(0)), "runs": results}, indent=2))


if __name__ == "__main__":
    main()
